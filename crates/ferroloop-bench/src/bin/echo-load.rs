//! Echo load generator: `echo-load TARGET CONNECTIONS SIZE SECONDS`.
//!
//! Each connection (one thread each) sends a SIZE-byte message, reads the
//! whole echo back, and repeats until SECONDS have passed; then the total
//! number of round trips and the elapsed time are printed as
//! `messages=N seconds=T`. TARGET is `host:port`, `unix:/path` or
//! `tls:host:port`.

use std::io::{Read, Write};

use ferroloop_bench::{drive, LoadArgs, Stream};

fn main() {
    let args = LoadArgs::from_env("echo-load", "TARGET");
    let streams: Vec<Stream> = (0..args.clients)
        .map(|_| Stream::connect(&args.target).expect("connect"))
        .collect();
    let size = args.size;
    let (messages, seconds) = drive(streams, args.seconds, move |mut stream, shared| {
        let message = vec![b'x'; size];
        let mut echo = vec![0u8; size];
        while !shared.stopped() {
            stream.write_all(&message).expect("write");
            stream.flush().expect("flush");
            stream.read_exact(&mut echo).expect("read");
            shared.count();
        }
    });
    println!("messages={messages} seconds={seconds:.6}");
}
