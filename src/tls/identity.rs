//! Identities: a self-signed certificate and its key in one PEM file, and the fingerprint
//! that names it.
//!
//! The fingerprint is SHA-256 of the certificate's DER bytes (as Syncthing's device IDs),
//! printed as ssh prints key fingerprints: `SHA256:` and base64 without padding. The whole
//! certificate rather than its public key, so any TLS stack can compute it from what the
//! handshake shows (Python's `getpeercert(binary_form=True)`), without parsing X.509.
//! The certificate is made once and stored beside the key, so the fingerprint never changes.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::ConfigError;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// SHA-256 of a certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a certificate's DER bytes.
    pub fn of(cert_der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert_der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", STANDARD_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("{s:?} is not a fingerprint: expected SHA256: and 43 base64 characters, as `rcmd fingerprint` prints")
        };
        let b64 = s.strip_prefix("SHA256:").ok_or_else(bad)?;
        let bytes = STANDARD_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map_err(|_| bad())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(Fingerprint(bytes))
    }
}

/// A certificate and its private key.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.fingerprint())
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// An identity, `known_hosts` or authorized keys file that cannot be read, trusted or
/// made, or a TLS set-up that cannot use it.
#[derive(Debug)]
pub enum IdentityError {
    /// No key could be made (no randomness).
    KeyGen(rcgen::Error),
    /// The file could not be read.
    Read { path: PathBuf, source: io::Error },
    /// The file could not be written.
    Write { path: PathBuf, source: io::Error },
    /// An identity file lacks its certificate or key (`missing` says which).
    Incomplete {
        path: PathBuf,
        missing: &'static str,
    },
    /// A PEM file holds no certificate.
    NoCertificate { path: PathBuf },
    /// A private key file belongs to another user.
    OtherOwner { path: PathBuf },
    /// Group or others may access a private key file (`mode`).
    Exposed { path: PathBuf, mode: u32 },
    /// A trusted file, or its directory, fails sshd's StrictModes checks.
    Untrusted(ConfigError),
    /// A line of `known_hosts` or `authorized_keys` that cannot be read.
    Line {
        path: PathBuf,
        line: usize,
        why: String,
    },
    /// rustls refused the configuration built from the identity.
    Tls(rustls::Error),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::KeyGen(e) => write!(f, "cannot make a key: {e}"),
            IdentityError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            IdentityError::Write { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
            IdentityError::Incomplete { path, missing } => write!(
                f,
                "{}: {missing}; make a new one with `rcmd keygen --output FILE`",
                path.display()
            ),
            IdentityError::NoCertificate { path } => {
                write!(f, "{}: no certificate in it", path.display())
            }
            IdentityError::OtherOwner { path } => write!(
                f,
                "{} belongs to another user, who holds this key too; use a file of your own",
                path.display()
            ),
            IdentityError::Exposed { path, mode } => write!(
                f,
                "{} is accessible to other users (mode {mode:04o}), who could take this key; \
                 run: chmod 600 {}",
                path.display(),
                shell_words::quote(&path.to_string_lossy())
            ),
            IdentityError::Untrusted(e) => e.fmt(f),
            IdentityError::Line { path, line, why } => {
                write!(f, "{} line {line}: {why}", path.display())
            }
            IdentityError::Tls(e) => write!(f, "cannot set up TLS: {e}"),
        }
    }
}

impl std::error::Error for IdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IdentityError::KeyGen(e) => Some(e),
            IdentityError::Read { source, .. } | IdentityError::Write { source, .. } => {
                Some(source)
            }
            IdentityError::Untrusted(e) => Some(e),
            IdentityError::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl Identity {
    /// A new Ed25519 key and a self-signed certificate for it, named `name`.
    ///
    /// # Errors
    /// If the key cannot be made (no randomness).
    pub fn generate(name: &str) -> Result<Identity, IdentityError> {
        let fail = IdentityError::KeyGen;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(fail)?;
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
        let cert = params.self_signed(&key).map_err(fail)?;
        Ok(Identity {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert)
    }

    /// The identity in `path`, which only its owner may read: a key others can read is
    /// no longer this machine's alone.
    ///
    /// # Errors
    /// If it cannot be read, is readable by others, or holds no certificate or key.
    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let pem = read_private(path)?;
        let bad = |missing| IdentityError::Incomplete {
            path: path.to_path_buf(),
            missing,
        };
        let cert = CertificateDer::from_pem_slice(&pem).map_err(|_| bad("no certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| bad("no private key"))?;
        Ok(Identity { cert, key })
    }

    /// The identity in `path`, made first (mode 0600) if there is none. Returns it and
    /// whether it was just made. Written under another name and linked into place when
    /// complete, so it is never seen half-written and two starts keep the same one.
    ///
    /// # Errors
    /// If an existing file fails [`Identity::load`], or a new one cannot be written.
    pub fn load_or_create(path: &Path, name: &str) -> Result<(Identity, bool), IdentityError> {
        if path.exists() {
            return Identity::load(path).map(|id| (id, false));
        }
        let id = Identity::generate(name)?;
        let cannot = |source| IdentityError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        // NamedTempFile opens with O_EXCL and mode 0600.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(cannot)?;
        tmp.write_all(id.to_pem().as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(cannot)?;
        match tmp.persist_noclobber(path) {
            Ok(_) => Ok((id, true)),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                Identity::load(path).map(|id| (id, false))
            }
            Err(e) => Err(cannot(e.error)),
        }
    }

    /// The certificate and the key, as PEM.
    pub fn to_pem(&self) -> String {
        let b64 = |label: &str, der: &[u8]| {
            let text = base64::engine::general_purpose::STANDARD.encode(der);
            let mut out = format!("-----BEGIN {label}-----\n");
            for line in text.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                out.push('\n');
            }
            out.push_str(&format!("-----END {label}-----\n"));
            out
        };
        b64("CERTIFICATE", &self.cert) + &b64("PRIVATE KEY", self.key.secret_der())
    }
}

/// The fingerprint of the certificate in a PEM file (an identity file, or a certificate
/// alone: no key is needed, so any file is accepted whatever its mode).
///
/// # Errors
/// If it cannot be read or holds no certificate.
pub fn fingerprint_file(path: &Path) -> Result<Fingerprint, IdentityError> {
    let pem = std::fs::read(path).map_err(|source| IdentityError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let cert = CertificateDer::from_pem_slice(&pem).map_err(|_| IdentityError::NoCertificate {
        path: path.to_path_buf(),
    })?;
    Ok(Fingerprint::of(&cert))
}

/// The bytes of a file only its owner may read or write.
fn read_private(path: &Path) -> Result<Vec<u8>, IdentityError> {
    let cannot = |source| IdentityError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !crate::config::owned_by_us(&meta) {
        return Err(IdentityError::OtherOwner {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    std::fs::read(path).map_err(cannot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_prints_as_ssh_and_parses_back() {
        let fp = Fingerprint::of(b"certificate");
        let text = fp.to_string();
        assert!(text.starts_with("SHA256:"));
        assert_eq!(text.len(), 7 + 43, "{text}");
        assert!(!text.ends_with('='));
        assert_eq!(text.parse::<Fingerprint>(), Ok(fp));
        assert!("SHA256:abc".parse::<Fingerprint>().is_err());
        assert!(text[7..].parse::<Fingerprint>().is_err());
    }

    #[test]
    fn identity_is_made_0600_once_and_keeps_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.pem");
        let (made, created) = Identity::load_or_create(&path, "rcmd").unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = Identity::load_or_create(&path, "rcmd").unwrap();
        assert!(!created);
        assert_eq!(again.fingerprint(), made.fingerprint());
        assert_eq!(fingerprint_file(&path).unwrap(), made.fingerprint());
        let other = Identity::generate("rcmd").unwrap();
        assert_ne!(other.fingerprint(), made.fingerprint(), "each key is new");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
