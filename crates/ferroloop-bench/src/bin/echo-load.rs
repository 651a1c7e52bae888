//! Echo load generator: `echo-load TARGET CONNECTIONS SIZE SECONDS`.
//!
//! Each connection (one thread each) sends a SIZE-byte message, reads the
//! whole echo back, and repeats until SECONDS have passed; then the total
//! number of round trips and the elapsed time are printed as
//! `messages=N seconds=T`. TARGET is `host:port`, `unix:/path` or
//! `tls:host:port`.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ferroloop_bench::Stream;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: echo-load TARGET CONNECTIONS SIZE SECONDS");
        std::process::exit(2);
    }
    let target = args[1].clone();
    let connections: usize = args[2].parse().expect("CONNECTIONS");
    let size: usize = args[3].parse().expect("SIZE");
    let seconds: f64 = args[4].parse().expect("SECONDS");

    let total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    for _ in 0..connections {
        streams.push(Stream::connect(&target).expect("connect"));
    }
    let start = Instant::now();
    let workers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let total = total.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let message = vec![b'x'; size];
                let mut echo = vec![0u8; size];
                while !stop.load(Ordering::Relaxed) {
                    stream.write_all(&message).expect("write");
                    stream.flush().expect("flush");
                    stream.read_exact(&mut echo).expect("read");
                    total.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    println!(
        "messages={} seconds={:.6}",
        total.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
}
