//! Datagram system calls and socket addresses: `recvfrom`/`sendto` over
//! IPv4, IPv6 and Unix sockets, and addresses read back as Python's `socket`
//! module presents them.

use std::net::{Ipv6Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;

use ferroloop_core::sys::sockaddr::{ipv4_text, ipv6_text, AddrView, SockAddr};
use ferroloop_core::sys::{self, socket};

fn udp(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

#[test]
fn ipv4_datagrams_carry_their_sender() {
    let a = udp("127.0.0.1:0");
    let b = udp("127.0.0.1:0");
    let b_port = b.local_addr().unwrap().port();
    let to = SockAddr::v4([127, 0, 0, 1], b_port);
    assert_eq!(socket::send_to(a.as_raw_fd(), b"ping", &to).unwrap(), 4);
    assert_eq!(socket::send_to(a.as_raw_fd(), b"", &to).unwrap(), 0);
    let mut buf = [0u8; 16];
    let mut from = SockAddr::empty();
    let n = socket::recv_from(b.as_raw_fd(), &mut buf, &mut from).unwrap();
    assert_eq!(&buf[..n], b"ping");
    let a_port = a.local_addr().unwrap().port();
    assert_eq!(
        from.view(),
        AddrView::V4 {
            ip: [127, 0, 0, 1],
            port: a_port
        }
    );
    assert_eq!(
        from,
        SockAddr::v4([127, 0, 0, 1], a_port),
        "equal to one built"
    );
    assert_eq!(from.family(), libc::AF_INET);
    let n = socket::recv_from(b.as_raw_fd(), &mut buf, &mut from).unwrap();
    assert_eq!(n, 0, "an empty datagram is a datagram");
    let err = socket::recv_from(b.as_raw_fd(), &mut buf, &mut from).unwrap_err();
    assert!(sys::would_block(&err));
}

#[test]
fn datagrams_are_cut_to_the_buffer() {
    let a = udp("127.0.0.1:0");
    let b = udp("127.0.0.1:0");
    let to = SockAddr::v4([127, 0, 0, 1], b.local_addr().unwrap().port());
    socket::send_to(a.as_raw_fd(), b"0123456789", &to).unwrap();
    socket::send_to(a.as_raw_fd(), b"next", &to).unwrap();
    let mut buf = [0u8; 4];
    let mut from = SockAddr::empty();
    assert_eq!(
        socket::recv_from(b.as_raw_fd(), &mut buf, &mut from).unwrap(),
        4
    );
    assert_eq!(&buf, b"0123");
    assert_eq!(
        socket::recv_from(b.as_raw_fd(), &mut buf, &mut from).unwrap(),
        4
    );
    assert_eq!(&buf, b"next", "the rest of a cut datagram is gone");
}

#[test]
fn ipv6_addresses_keep_flowinfo_and_scope() {
    let Ok(b) = UdpSocket::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback: skipped");
        return;
    };
    b.set_nonblocking(true).unwrap();
    let a = udp("[::1]:0");
    let loopback = Ipv6Addr::LOCALHOST.octets();
    let to = SockAddr::v6(loopback, b.local_addr().unwrap().port(), 0, 0);
    assert_eq!(socket::send_to(a.as_raw_fd(), b"six", &to).unwrap(), 3);
    let mut buf = [0u8; 8];
    let mut from = SockAddr::empty();
    assert_eq!(
        socket::recv_from(b.as_raw_fd(), &mut buf, &mut from).unwrap(),
        3
    );
    assert_eq!(
        from.view(),
        AddrView::V6 {
            ip: loopback,
            port: a.local_addr().unwrap().port(),
            flowinfo: 0,
            scope_id: 0
        }
    );
    let built = SockAddr::v6(loopback, 80, 0x12345, 7);
    assert_eq!(
        built.view(),
        AddrView::V6 {
            ip: loopback,
            port: 80,
            flowinfo: 0x12345,
            scope_id: 7
        }
    );
}

#[test]
fn unix_paths_abstract_names_and_unnamed_senders() {
    let dir = std::env::temp_dir().join(format!("ferroloop-dgram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server");
    let _ = std::fs::remove_file(&path);
    let server = UnixDatagram::bind(&path).unwrap();
    server.set_nonblocking(true).unwrap();
    let path_bytes = path.as_os_str().as_encoded_bytes();
    let to = SockAddr::unix(path_bytes).unwrap();
    assert_eq!(to.view(), AddrView::UnixPath(path_bytes));

    // An unbound sender has no name.
    let unnamed = UnixDatagram::unbound().unwrap();
    assert_eq!(
        socket::send_to(unnamed.as_raw_fd(), b"who", &to).unwrap(),
        3
    );
    let mut buf = [0u8; 8];
    let mut from = SockAddr::empty();
    assert_eq!(
        socket::recv_from(server.as_raw_fd(), &mut buf, &mut from).unwrap(),
        3
    );
    assert_eq!(from.view(), AddrView::Unnamed);
    assert!(from.is_empty());

    // An abstract name keeps every byte, the leading NUL included.
    let name = format!("\0ferroloop-{}", std::process::id());
    let abstract_addr = SockAddr::unix(name.as_bytes()).unwrap();
    let named = UnixDatagram::unbound().unwrap();
    // SAFETY: the address and its length come from a SockAddr.
    let rc = unsafe {
        libc::bind(
            named.as_raw_fd(),
            abstract_addr.as_ptr(),
            abstract_addr.len(),
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    socket::send_to(named.as_raw_fd(), b"abs", &to).unwrap();
    socket::recv_from(server.as_raw_fd(), &mut buf, &mut from).unwrap();
    assert_eq!(from.view(), AddrView::UnixAbstract(name.as_bytes()));
    assert_eq!(from, abstract_addr);

    // A path sender is named by its path.
    let client_path = dir.join("client");
    let _ = std::fs::remove_file(&client_path);
    let client = UnixDatagram::bind(&client_path).unwrap();
    socket::send_to(client.as_raw_fd(), b"p", &to).unwrap();
    socket::recv_from(server.as_raw_fd(), &mut buf, &mut from).unwrap();
    assert_eq!(
        from.view(),
        AddrView::UnixPath(client_path.as_os_str().as_encoded_bytes())
    );

    assert!(SockAddr::unix(&[b'x'; 200]).is_none(), "too long");
    assert!(
        SockAddr::unix(&[b'x'; 107]).is_some(),
        "107 bytes and a NUL fit"
    );
    assert!(SockAddr::unix(&[b'x'; 108]).is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn connected_send_errors_keep_errno() {
    // A datagram to a port nobody listens on: the ICMP error comes back on
    // the connected socket's next call.
    let closed = udp("127.0.0.1:0");
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let a = udp("127.0.0.1:0");
    a.connect(("127.0.0.1", port)).unwrap();
    socket::send(a.as_raw_fd(), b"x").unwrap();
    let mut buf = [0u8; 4];
    let mut from = SockAddr::empty();
    let mut refused = None;
    for _ in 0..1000 {
        match socket::recv_from(a.as_raw_fd(), &mut buf, &mut from) {
            Err(e) if sys::would_block(&e) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(e) => {
                refused = e.raw_os_error();
                break;
            }
            Ok(n) => panic!("received {n} bytes"),
        }
    }
    assert_eq!(refused, Some(libc::ECONNREFUSED));
}

#[test]
fn address_texts_are_the_c_library_ones() {
    let mut buf = [0; 15];
    assert_eq!(ipv4_text([127, 0, 0, 1], &mut buf), "127.0.0.1");
    assert_eq!(ipv4_text([255, 255, 255, 255], &mut buf), "255.255.255.255");
    assert_eq!(ipv4_text([0, 10, 100, 9], &mut buf), "0.10.100.9");
    for a in [0_u8, 1, 9, 10, 99, 100, 199, 200, 255] {
        let ip = [a, 255 - a, a / 2, 7];
        let expected = std::net::Ipv4Addr::from(ip).to_string();
        assert_eq!(ipv4_text(ip, &mut buf), expected);
    }
    let mut ip = [0u8; 16];
    ip[15] = 1;
    assert_eq!(ipv6_text(ip).unwrap(), "::1");
    let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(ipv6_text(mapped.octets()).unwrap(), "::ffff:10.0.0.1");
    // IPv4-compatible: the C library writes the dotted form, Rust does not.
    let compatible: Ipv6Addr = "::10.0.0.1".parse().unwrap();
    assert_eq!(ipv6_text(compatible.octets()).unwrap(), "::10.0.0.1");
    let link: Ipv6Addr = "fe80::1:2".parse().unwrap();
    assert_eq!(ipv6_text(link.octets()).unwrap(), "fe80::1:2");
}
