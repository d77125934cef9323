//! STARTTLS's server side: the rustls configuration built from `tls_cert` and `tls_key`
//! (PEM; loaded at start-up and on every SIGHUP), and the handshake that upgrades a TCP
//! connection after `220 2.0.0 Ready to start TLS`.
//!
//! rustls with the `ring` provider: Apache-2.0/ISC/MIT, builds with the C compiler the
//! machine already has (aws-lc-rs needs cmake and more), a small binary. TLS 1.2 and 1.3
//! with rustls' safe defaults; no client certificates.

use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::config::TlsSection;

/// The longest a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection after STARTTLS.
pub type TlsStream = StreamOwned<ServerConnection, TcpStream>;

/// The server configuration for `cfg`, or `None` when no certificate is configured.
/// Fails with a sentence naming the file when a file cannot be read or does not hold a
/// usable certificate chain and key.
pub fn server_config(cfg: &TlsSection) -> Result<Option<Arc<ServerConfig>>, String> {
    let (cert, key) = (&cfg.cert, &cfg.key);
    match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
        (true, true) => return Ok(None),
        (false, true) => return Err("tls_cert is set but tls_key is not".into()),
        (true, false) => return Err("tls_key is set but tls_cert is not".into()),
        (false, false) => {}
    }
    let certs = load_certs(cert)?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_cert {} with tls_key: {e}", cert.display()))?;
    Ok(Some(Arc::new(config)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("tls_cert {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("tls_cert {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// Runs the server side of the handshake on `tcp` (whose read timeout is the session's
/// short tick: a would-block is retried until [`HANDSHAKE_TIMEOUT`]).
pub fn accept(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<TlsStream> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    let started = Instant::now();
    while s.conn.is_handshaking() {
        match s.conn.complete_io(&mut s.sock) {
            Ok((0, 0)) if s.conn.is_handshaking() => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                ))
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if started.elapsed() > HANDSHAKE_TIMEOUT {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(s)
}

/// `TLSv1_3 TLS13_AES_256_GCM_SHA384`: what was negotiated, for the log.
pub fn describe(s: &TlsStream) -> String {
    let version = s
        .conn
        .protocol_version()
        .map_or_else(|| "?".to_string(), |v| format!("{v:?}"));
    let suite = s
        .conn
        .negotiated_cipher_suite()
        .map_or_else(|| "?".to_string(), |c| format!("{:?}", c.suite()));
    format!("{version} {suite}")
}
