//! TLS 1.3 under the framed protocol, with identities pinned by fingerprint as ssh pins
//! host keys: no certificate authority, no names in certificates that matter.
//!
//! The server proves it holds the key of the certificate it shows (TLS does that); the
//! client decides whether that certificate is the one it expects ([`PinVerifier`]): the one
//! given with `--fingerprint`, the one `known_hosts` recorded for this address, or this
//! user's own server identity. The server takes any client certificate at the TLS layer
//! ([`AnyClientCert`]) and then decides, by its fingerprint, whether the key alone
//! authenticates the client ([`ServerTls::authorizes`]). The framed protocol runs unchanged
//! inside.

pub mod authorized;
pub mod identity;
pub mod known_hosts;
pub mod prompt;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use self::identity::{Fingerprint, Identity, IdentityError};
use self::known_hosts::KnownHosts;

/// The client's TLS connection.
pub type ClientStream = CleanEof<tokio_rustls::client::TlsStream<TcpStream>>;
/// The server's TLS connection.
pub type ServerStream = CleanEof<tokio_rustls::server::TlsStream<TcpStream>>;

/// A TLS stream on which a peer closing without TLS's `close_notify` is an ordinary end
/// of stream. TLS reports it as an error because a truncation could otherwise go unseen;
/// the framed protocol sees one itself (an end inside a frame is an error, and a reply
/// always ends with its status), so it is safe to treat as the peer hanging up.
#[derive(Debug)]
pub struct CleanEof<S>(S);

impl<S> CleanEof<S> {
    pub fn get_ref(&self) -> &S {
        &self.0
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CleanEof<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CleanEof<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `ring`: it builds with only a C compiler (see Cargo.toml).
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::{cipher_suite, default_provider};
    // AES-128-GCM first: on processors with AES instructions it is the fastest of the
    // three TLS 1.3 ciphers, and 128-bit keys are what TLS 1.3 itself prefers by default.
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..default_provider()
    })
}

/// TLS 1.3 only: nothing older is needed, as both ends are rcmd (or Python 3.7+).
const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

// ------------------------------------------------------------------------------- server

/// What the server needs for TLS: its identity, and the client keys that authenticate
/// alone.
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    /// The server's own fingerprint, as clients see it.
    pub fingerprint: Fingerprint,
    authorized: authorized::AuthorizedKeys,
    /// Whether a client must present one of the authorized keys (`--keys-only`);
    /// otherwise an unlisted client authenticates with the token.
    pub require_key: bool,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("fingerprint", &self.fingerprint)
            .field("authorized", &self.authorized)
            .field("require_key", &self.require_key)
            .finish()
    }
}

impl ServerTls {
    /// TLS with `identity`; the `authorized` client keys need no token.
    ///
    /// # Errors
    /// If rustls refuses the key.
    pub fn new(
        identity: &Identity,
        authorized: Vec<Fingerprint>,
        require_key: bool,
    ) -> Result<ServerTls, IdentityError> {
        let keys = authorized::AuthorizedKeys::new(None, authorized)?;
        ServerTls::with_keys(identity, keys, require_key)
    }

    /// TLS with `identity`; the keys `authorized` holds (read again as its file
    /// changes) need no token.
    ///
    /// # Errors
    /// If rustls refuses the key.
    pub fn with_keys(
        identity: &Identity,
        authorized: authorized::AuthorizedKeys,
        require_key: bool,
    ) -> Result<ServerTls, IdentityError> {
        let provider = provider();
        let verifier = Arc::new(AnyClientCert {
            provider: Arc::clone(&provider),
        });
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(IdentityError::Tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
            .map_err(IdentityError::Tls)?;
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            fingerprint: identity.fingerprint(),
            authorized,
            require_key,
        })
    }

    /// Completes the TLS handshake; returns the connection and the client key's
    /// fingerprint, if it presented one.
    ///
    /// # Errors
    /// If the handshake fails.
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<(ServerStream, Option<Fingerprint>)> {
        let tls = self.acceptor.accept(stream).await?;
        let key = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| Fingerprint::of(c));
        Ok((CleanEof(tls), key))
    }

    /// Whether the client key `key` authenticates the client without a token.
    pub fn authorizes(&self, key: Option<Fingerprint>) -> bool {
        key.is_some_and(|k| self.authorized.contains(&k))
    }

    /// The authorized keys file the server reads, if any.
    pub fn authorized_keys_file(&self) -> Option<&std::path::Path> {
        self.authorized.file()
    }
}

/// Takes any client certificate whose key signed the handshake; the server decides by
/// fingerprint afterwards, where it can answer in the protocol's own words.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signatures::tls12(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signatures::tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signatures::schemes(&self.provider)
    }
}

// ------------------------------------------------------------------------------- client

/// What to do with a server no fingerprint is known for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewHost {
    /// Refuse it, saying how to pin it.
    Refuse,
    /// Record it in `known_hosts` and go on (`--accept-new`).
    Accept,
    /// Show the fingerprint on the terminal and ask.
    Ask,
}

/// How the client decides whom to trust, and the key it shows.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The client key to present (`rcmd keygen`), if this user has one.
    pub identity: Option<Identity>,
    /// `--fingerprint`: this server and no other; `known_hosts` is neither read nor written.
    pub pin: Option<Fingerprint>,
    /// This user's own server identity, trusted at any address.
    pub own_server: Option<Fingerprint>,
    /// The `known_hosts` file.
    pub known_hosts: Option<PathBuf>,
    pub new_host: NewHost,
}

/// Why the client would not talk to a server.
#[derive(Debug)]
pub enum TrustError {
    /// `known_hosts` could not be read, trusted or added to.
    KnownHosts(IdentityError),
    /// rustls refused the client's configuration.
    Tls(rustls::Error),
    /// No TLS answer within `--connect-timeout`.
    Timeout { host: String, limit: Duration },
    /// The TLS handshake itself failed: the peer may speak no TLS at all.
    Handshake { host: String, source: io::Error },
    /// The server's identity is not the one expected: `seen` instead.
    Changed {
        host: String,
        seen: Fingerprint,
        expected: Box<Expected>,
    },
    /// The server completed the handshake without a certificate.
    NoCertificate { host: String },
    /// A person was asked about a new server and said no.
    NotAccepted { host: String },
    /// A server no fingerprint is known for, refused on first use (no `--accept-new`).
    Unknown {
        host: String,
        seen: Fingerprint,
        known_hosts: PathBuf,
    },
    /// The question about a new server could not be asked on the terminal.
    Terminal(io::Error),
    /// The person interrupted the question (Ctrl-C, Ctrl-D).
    Interrupted,
}

/// The identity a server was expected to show, for [`TrustError::Changed`].
#[derive(Debug, Clone)]
pub enum Expected {
    /// Given with `--fingerprint`.
    Pin(Fingerprint),
    /// A line of `known_hosts`.
    Entry {
        file: PathBuf,
        line: usize,
        fingerprint: Fingerprint,
    },
    /// Another (this user's own server's).
    Other,
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::KnownHosts(e) => e.fmt(f),
            TrustError::Tls(e) => write!(f, "cannot set up TLS: {e}"),
            TrustError::Timeout { host, limit } => write!(
                f,
                "{host}: no TLS answer within {}s (--connect-timeout)",
                limit.as_secs_f64()
            ),
            TrustError::Handshake { host, source } => write!(
                f,
                "TLS handshake with {host} failed: {source} (a server started with \
                 --plaintext needs --plaintext here too)"
            ),
            TrustError::Changed {
                host,
                seen,
                expected,
            } => {
                f.write_str("@@@ WARNING: THE SERVER'S IDENTITY IS NOT THE ONE EXPECTED @@@\n")?;
                write!(f, "the server at {host} presented {seen}, ")?;
                match &**expected {
                    Expected::Pin(pin) => write!(f, "not {pin}, given with --fingerprint")?,
                    Expected::Entry {
                        file,
                        line,
                        fingerprint,
                    } => write!(f, "but {} line {line} says {fingerprint}", file.display())?,
                    Expected::Other => f.write_str("which is not the one expected")?,
                }
                f.write_str(
                    ".\nSomeone may be intercepting the connection, or the server's identity \
                     was replaced. Nothing was sent.",
                )?;
                if let Expected::Entry { file, line, .. } = &**expected {
                    write!(
                        f,
                        "\nIf the change is expected, remove line {line} of {} and connect again.",
                        file.display()
                    )?;
                }
                Ok(())
            }
            TrustError::NoCertificate { host } => write!(f, "{host} presented no certificate"),
            TrustError::NotAccepted { host } => {
                write!(f, "{host}: identity not accepted; nothing was sent")
            }
            TrustError::Unknown {
                host,
                seen,
                known_hosts,
            } => write!(
                f,
                "unknown server identity: {host} presents {seen}, which is not in {}. Check it \
                 against `rcmd fingerprint` on the server, then connect again with \
                 --fingerprint {seen}, or with --accept-new to record it",
                known_hosts.display()
            ),
            TrustError::Terminal(e) => write!(f, "cannot ask on the terminal: {e}"),
            TrustError::Interrupted => {
                f.write_str("the question was interrupted; nothing was sent")
            }
        }
    }
}

impl std::error::Error for TrustError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrustError::KnownHosts(e) => Some(e),
            TrustError::Tls(e) => Some(e),
            TrustError::Handshake { source, .. } | TrustError::Terminal(source) => Some(source),
            _ => None,
        }
    }
}

impl TrustError {
    /// Whether the server was refused only for being unknown (first use without
    /// `--accept-new`), as opposed to a changed identity or a failed handshake.
    pub fn is_unknown_host(&self) -> bool {
        matches!(self, TrustError::Unknown { .. })
    }

    /// Whether the TLS handshake itself failed (the peer may speak no TLS at all), as
    /// opposed to a server that completed it with an identity we refuse.
    pub fn is_failed_handshake(&self) -> bool {
        matches!(self, TrustError::Handshake { .. })
    }
}

/// What came of a TLS handshake the client trusts.
#[derive(Debug)]
pub enum Connected {
    /// Ready for the framed protocol; `own` says whether the server proved to be this
    /// user's own (the only one the same-user token may go to).
    Ready {
        stream: Box<ClientStream>,
        own: bool,
    },
    /// A person was asked about a new server and trusted it; it is now in `known_hosts`.
    /// This connection is spent: the server's deadline for the hello ran while the person
    /// answered, so the caller connects again (and that server must show the same identity).
    Recorded,
}

impl ClientTls {
    /// Completes the TLS handshake over `stream` and decides whether to trust the server,
    /// known in `known_hosts` as `host` (`HOST:PORT` as the user wrote it, as ssh records
    /// the name typed).
    /// Nothing of the framed protocol (no token, no command) is sent before this returns.
    ///
    /// # Errors
    /// A [`TrustError`] for a failed handshake, a changed identity (saying which line of
    /// which file to remove), or an unknown one that is not accepted.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
        timeout: Option<std::time::Duration>,
    ) -> Result<Connected, TrustError> {
        let host = host.to_string();
        let mut known = match (&self.pin, &self.known_hosts) {
            (None, Some(path)) => Some(KnownHosts::load(path).map_err(TrustError::KnownHosts)?),
            _ => None,
        };
        let entry = known.as_ref().and_then(|k| k.get(&host)).cloned();
        let (accept, strict) = match self.pin {
            Some(pin) => (vec![pin], true),
            None => {
                let mut accept: Vec<_> = self.own_server.into_iter().collect();
                accept.extend(entry.as_ref().map(|e| e.fingerprint));
                (accept, entry.is_some())
            }
        };
        let verifier = Arc::new(PinVerifier {
            accept: accept.clone(),
            strict,
            refused: Mutex::new(None),
            provider: provider(),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(TrustError::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let mut config = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(vec![id.cert.clone()], id.key.clone_key())
                .map_err(TrustError::Tls)?,
            None => builder.with_no_client_auth(),
        };
        // Certificates carry no names that matter, so there is none to send.
        config.enable_sni = false;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from("rcmd").expect("a valid name");
        // Only the exchange with the server is timed, never a person answering below.
        let handshake = connector.connect(name, stream);
        let handshake =
            match timeout {
                Some(limit) => tokio::time::timeout(limit, handshake).await.map_err(|_| {
                    TrustError::Timeout {
                        host: host.clone(),
                        limit,
                    }
                })?,
                None => handshake.await,
            };
        let tls = match handshake {
            Ok(tls) => tls,
            Err(e) => {
                let refused = *verifier.refused.lock().expect("not poisoned");
                return Err(match refused {
                    Some(seen) => changed(&host, seen, self.pin, entry.as_ref(), known.as_ref()),
                    None => TrustError::Handshake {
                        host: host.clone(),
                        source: e,
                    },
                });
            }
        };
        let seen = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Fingerprint::of(c))
            .ok_or_else(|| TrustError::NoCertificate { host: host.clone() })?;
        let tls = CleanEof(tls);
        if accept.contains(&seen) {
            // Whether the server proved to be this user's own: only that one may be sent
            // the same-user token.
            return Ok(Connected::Ready {
                stream: Box::new(tls),
                own: self.own_server == Some(seen),
            });
        }
        // A server no fingerprint is known for: the verifier let it through only so that
        // we may decide here, before anything is sent.
        let known = known.as_mut().expect("unknown only without --fingerprint");
        match self.new_host {
            NewHost::Accept => {}
            NewHost::Ask => {
                // Nothing is said to this server while a person decides: it would give up on
                // our hello meanwhile.
                drop(tls);
                if !prompt::ask(&host, seen).await? {
                    return Err(TrustError::NotAccepted { host });
                }
                known.add(&host, seen).map_err(TrustError::KnownHosts)?;
                eprintln!("rcmd: added {host} ({seen}) to {}", known.path.display());
                return Ok(Connected::Recorded);
            }
            NewHost::Refuse => {
                return Err(TrustError::Unknown {
                    host,
                    seen,
                    known_hosts: known.path.clone(),
                })
            }
        }
        known.add(&host, seen).map_err(TrustError::KnownHosts)?;
        eprintln!("rcmd: added {host} ({seen}) to {}", known.path.display());
        Ok(Connected::Ready {
            stream: Box::new(tls),
            own: self.own_server == Some(seen),
        })
    }
}

/// The refusal of a server whose identity is not the one expected.
fn changed(
    host: &str,
    seen: Fingerprint,
    pin: Option<Fingerprint>,
    entry: Option<&known_hosts::Entry>,
    known: Option<&KnownHosts>,
) -> TrustError {
    let expected = match (pin, entry, known) {
        (Some(pin), _, _) => Expected::Pin(pin),
        (None, Some(entry), Some(known)) => Expected::Entry {
            file: known.path.clone(),
            line: entry.line,
            fingerprint: entry.fingerprint,
        },
        _ => Expected::Other,
    };
    TrustError::Changed {
        host: host.to_string(),
        seen,
        expected: Box::new(expected),
    }
}

/// Accepts the server's certificate when its fingerprint is one of `accept`; any other is
/// refused when `strict` (a pin or a `known_hosts` entry exists), and otherwise let through
/// for [`ClientTls::connect`] to decide about. TLS itself checks the server holds the key.
#[derive(Debug)]
struct PinVerifier {
    accept: Vec<Fingerprint>,
    strict: bool,
    /// The fingerprint refused, for the message.
    refused: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = Fingerprint::of(end_entity);
        if self.accept.contains(&seen) || !self.strict {
            return Ok(ServerCertVerified::assertion());
        }
        *self.refused.lock().expect("not poisoned") = Some(seen);
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signatures::tls12(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signatures::tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signatures::schemes(&self.provider)
    }
}

/// Signature checks both verifiers make the same way: the handshake's signatures are
/// checked as usual; only the choice of certificate is rcmd's own.
mod signatures {
    use rustls::client::danger::HandshakeSignatureValid;
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::CertificateDer;
    use rustls::{DigitallySignedStruct, SignatureScheme};

    pub(super) fn tls12(
        provider: &CryptoProvider,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &provider.signature_verification_algorithms,
        )
    }

    pub(super) fn tls13(
        provider: &CryptoProvider,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &provider.signature_verification_algorithms,
        )
    }

    pub(super) fn schemes(provider: &CryptoProvider) -> Vec<SignatureScheme> {
        provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
