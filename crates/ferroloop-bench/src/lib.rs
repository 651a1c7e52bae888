//! Shared bits of the benchmark binaries.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The command line of a load generator: `NAME TARGET CLIENTS SIZE SECONDS`.
pub struct LoadArgs {
    /// Where to send (`host:port`, or `unix:/path` for streams).
    pub target: String,
    /// How many clients (connections), one thread each.
    pub clients: usize,
    /// The message size in bytes.
    pub size: usize,
    /// How long to run.
    pub seconds: f64,
}

impl LoadArgs {
    /// Parses the command line; exits with a usage line if it is wrong.
    pub fn from_env(name: &str, target: &str) -> LoadArgs {
        let args: Vec<String> = std::env::args().collect();
        if args.len() != 5 {
            eprintln!("usage: {name} {target} CLIENTS SIZE SECONDS");
            std::process::exit(2);
        }
        LoadArgs {
            target: args[1].clone(),
            clients: args[2].parse().expect("CLIENTS"),
            size: args[3].parse().expect("SIZE"),
            seconds: args[4].parse().expect("SECONDS"),
        }
    }
}

/// What the clients of a load run share: the count of round trips and the
/// flag that stops them.
#[derive(Clone, Default)]
pub struct Shared {
    /// Completed round trips.
    pub total: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Shared {
    /// Whether the run is over.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Counts one round trip.
    pub fn count(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `client` once per item of `clients`, each on its own thread, for
/// `seconds`; returns the round trips counted and the elapsed seconds.
pub fn drive<C: Send + 'static>(
    clients: Vec<C>,
    seconds: f64,
    client: impl Fn(C, Shared) + Send + Sync + Clone + 'static,
) -> (u64, f64) {
    let shared = Shared::default();
    let start = Instant::now();
    let workers: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let (shared, client) = (shared.clone(), client.clone());
            thread::spawn(move || client(c, shared))
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(seconds));
    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    (
        shared.total.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
    )
}

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

/// A connected stream: TCP, Unix, or TLS over TCP.
pub enum Stream {
    /// TCP (with `TCP_NODELAY`).
    Tcp(TcpStream),
    /// Unix stream socket.
    Unix(UnixStream),
    /// TLS over TCP (with `TCP_NODELAY`); the server's certificate is not
    /// verified (this is a load generator).
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Connects to `host:port`, or with a leading `unix:` to a socket path,
    /// or with a leading `tls:` to `host:port` over TLS.
    pub fn connect(target: &str) -> std::io::Result<Stream> {
        if let Some(path) = target.strip_prefix("unix:") {
            return Ok(Stream::Unix(UnixStream::connect(path)?));
        }
        let (tls, address) = match target.strip_prefix("tls:") {
            Some(address) => (true, address),
            None => (false, target),
        };
        let tcp = TcpStream::connect(address)?;
        tcp.set_nodelay(true)?;
        if !tls {
            return Ok(Stream::Tcp(tcp));
        }
        let name = ServerName::try_from("localhost").expect("valid name");
        let conn = ClientConnection::new(tls_config(), name).map_err(std::io::Error::other)?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Stream::Tls(Box::new(stream)))
    }
}

fn tls_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts any server certificate (signatures are still checked).
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }
}
