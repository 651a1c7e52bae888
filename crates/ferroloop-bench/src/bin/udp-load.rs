//! UDP echo load generator: `udp-load HOST:PORT CLIENTS SIZE SECONDS`.
//!
//! Each client (one thread and one UDP socket each) sends a SIZE-byte
//! datagram, waits for the echo, and repeats until SECONDS have passed. A
//! datagram whose echo does not come back within 50 ms counts as lost and
//! the client sends the next one. Prints `messages=N seconds=T lost=L`
//! (N counts echoed datagrams only).

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferroloop_bench::{drive, LoadArgs};

fn main() {
    let args = LoadArgs::from_env("udp-load", "HOST:PORT");
    let sockets: Vec<UdpSocket> = (0..args.clients)
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket.connect(&args.target).expect("connect");
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            socket
        })
        .collect();
    let lost = Arc::new(AtomicU64::new(0));
    let (size, lost_count) = (args.size, lost.clone());
    let (messages, seconds) = drive(sockets, args.seconds, move |socket, shared| {
        let message = vec![b'x'; size];
        let mut echo = vec![0u8; size + 1];
        while !shared.stopped() {
            socket.send(&message).expect("send");
            match socket.recv(&mut echo) {
                Ok(n) => {
                    assert_eq!(n, size, "an echo of another size");
                    shared.count();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    lost_count.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
    });
    let lost = lost.load(Ordering::Relaxed);
    println!("messages={messages} seconds={seconds:.6} lost={lost}");
}
