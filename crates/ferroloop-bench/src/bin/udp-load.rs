//! UDP echo load generator: `udp-load HOST:PORT CLIENTS SIZE SECONDS`.
//!
//! Each client (one thread and one UDP socket each) sends a SIZE-byte
//! datagram, waits for the echo, and repeats until SECONDS have passed. A
//! datagram whose echo does not come back within 50 ms counts as lost and
//! the client sends the next one. Prints `messages=N seconds=T lost=L`
//! (N counts echoed datagrams only).

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: udp-load HOST:PORT CLIENTS SIZE SECONDS");
        std::process::exit(2);
    }
    let target = args[1].clone();
    let clients: usize = args[2].parse().expect("CLIENTS");
    let size: usize = args[3].parse().expect("SIZE");
    let seconds: f64 = args[4].parse().expect("SECONDS");

    let total = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut sockets = Vec::new();
    for _ in 0..clients {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.connect(&target).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        sockets.push(socket);
    }
    let start = Instant::now();
    let workers: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let (total, lost, stop) = (total.clone(), lost.clone(), stop.clone());
            thread::spawn(move || {
                let message = vec![b'x'; size];
                let mut echo = vec![0u8; size + 1];
                while !stop.load(Ordering::Relaxed) {
                    socket.send(&message).expect("send");
                    match socket.recv(&mut echo) {
                        Ok(n) => {
                            assert_eq!(n, size, "an echo of another size");
                            total.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("recv: {e}"),
                    }
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
        "messages={} seconds={:.6} lost={}",
        total.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
        lost.load(Ordering::Relaxed)
    );
}
