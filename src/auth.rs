//! Who may run commands: the shared token, and the rule for when one is required.
//!
//! A server that runs commands from the network is a remote shell, so it listens on
//! loopback unless told otherwise, and anywhere else it needs a token (or an explicit
//! `--allow-unauthenticated`). The token travels in the client's hello and is compared in
//! constant time, without revealing its length through timing.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

/// The longest token accepted: the whole hello must fit in the pre-handshake frame limit.
pub const MAX_TOKEN: usize = 1024;

/// A shared secret. Its `Debug` output never shows it.
#[derive(Clone)]
pub struct Token {
    /// The token, zero-padded to `MAX_TOKEN` once, so a comparison always reads the
    /// same number of bytes whatever the token's length.
    padded: Box<[u8; MAX_TOKEN]>,
    len: usize,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

/// A token that cannot be used, and why.
#[derive(Debug)]
pub enum TokenError {
    /// The token has no bytes.
    Empty,
    /// The token is longer than [`MAX_TOKEN`].
    TooLong { len: usize },
    /// The token file could not be opened or read.
    Read { path: PathBuf, source: io::Error },
    /// The token file is a directory, a device, ...
    NotRegular { path: PathBuf },
    /// Another user owns the token file, and so chose the token.
    OtherOwner { path: PathBuf },
    /// Group or others may access the token file (`mode`).
    Exposed { path: PathBuf, mode: u32 },
    /// The token file holds a token that cannot be used.
    Unusable {
        path: PathBuf,
        source: Box<TokenError>,
    },
    /// A new token file could not be made.
    Create { path: PathBuf, source: io::Error },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Empty => f.write_str("the token is empty"),
            TokenError::TooLong { len } => {
                write!(
                    f,
                    "the token is {len} bytes; at most {MAX_TOKEN} are allowed"
                )
            }
            TokenError::Read { path, source } => {
                write!(f, "cannot read token file {}: {source}", path.display())
            }
            TokenError::NotRegular { path } => {
                write!(f, "token file {} is not a regular file", path.display())
            }
            TokenError::OtherOwner { path } => write!(
                f,
                "token file {} belongs to another user, who chose the token; use a file of \
                 your own",
                path.display()
            ),
            TokenError::Exposed { path, mode } => write!(
                f,
                "token file {} is accessible to other users (mode {mode:04o}), so they can \
                 read the token; run: chmod 600 {}",
                path.display(),
                shell_words::quote(&path.to_string_lossy())
            ),
            TokenError::Unusable { path, source } => {
                write!(f, "token file {}: {source}", path.display())
            }
            TokenError::Create { path, source } => {
                write!(f, "cannot create token file {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for TokenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenError::Read { source, .. } | TokenError::Create { source, .. } => Some(source),
            TokenError::Unusable { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl Token {
    /// A token from its text.
    ///
    /// # Errors
    /// If it is empty or longer than [`MAX_TOKEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Token, TokenError> {
        if secret.is_empty() {
            return Err(TokenError::Empty);
        }
        if secret.len() > MAX_TOKEN {
            return Err(TokenError::TooLong { len: secret.len() });
        }
        let mut padded = Box::new([0u8; MAX_TOKEN]);
        padded[..secret.len()].copy_from_slice(secret);
        Ok(Token {
            padded,
            len: secret.len(),
        })
    }

    /// The token's bytes, to send in a hello.
    pub fn as_bytes(&self) -> &[u8] {
        &self.padded[..self.len]
    }

    /// Whether `offered` is this token. Takes the same time for every offer of a given
    /// length, whatever the token is, so timing reveals neither its bytes nor its length.
    pub fn matches(&self, offered: &[u8]) -> bool {
        if offered.len() > MAX_TOKEN {
            return false;
        }
        let mut given = [0u8; MAX_TOKEN];
        given[..offered.len()].copy_from_slice(offered);
        let same_bytes = self.padded[..].ct_eq(&given[..]);
        let same_len = (self.len as u64).ct_eq(&(offered.len() as u64));
        (same_bytes & same_len).into()
    }

    /// The token from, in order of preference: the `--token` value, the `--token-file`
    /// file (trailing newline ignored), or the `RCMD_TOKEN` environment variable.
    ///
    /// # Errors
    /// If the file cannot be read or the token is unusable.
    pub fn from_sources(
        value: Option<&str>,
        file: Option<&Path>,
        env: Option<String>,
    ) -> Result<Option<Token>, TokenError> {
        if let Some(v) = value {
            Token::new(v.as_bytes()).map(Some)
        } else if let Some(path) = file {
            Token::from_file(path).map(Some)
        } else if let Some(v) = env.filter(|v| !v.is_empty()) {
            Token::new(v.as_bytes()).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The token in a file (a trailing newline ignored). The file must be readable and
    /// writable by its owner only: a token others can read is no longer a secret.
    ///
    /// # Errors
    /// If the file cannot be read, group or others may access it (the message gives the
    /// `chmod` that fixes it), or the token in it is unusable.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let cannot = |source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(cannot)?;
        // Checked on the open file, so the file read is the file checked.
        let meta = file.metadata().map_err(cannot)?;
        if !meta.is_file() {
            return Err(TokenError::NotRegular {
                path: path.to_path_buf(),
            });
        }
        if !crate::config::owned_by_us(&meta) {
            return Err(TokenError::OtherOwner {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(cannot)?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        Token::new(&bytes).map_err(|e| TokenError::Unusable {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// The token in `path`, made first if there is none: 32 random bytes as 64 hex
    /// digits. The file is written under another name with mode 0600 and linked into place
    /// only when complete, so it is never readable by others, never seen half-written, and
    /// a server starting at the same moment keeps the other's token instead of replacing it.
    /// Returns the token and whether it was just created.
    ///
    /// # Errors
    /// If the file cannot be read or made, or an existing one fails [`Token::from_file`].
    pub fn from_file_or_create(path: &Path) -> Result<(Token, bool), TokenError> {
        match Token::from_file(path) {
            Err(_) if !path.exists() => {}
            existing => return existing.map(|t| (t, false)),
        }
        let cannot = |source| TokenError::Create {
            path: path.to_path_buf(),
            source,
        };
        let secret = random_hex(32).map_err(cannot)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        // NamedTempFile opens with O_EXCL and mode 0600.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(cannot)?;
        tmp.write_all(format!("{secret}\n").as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(cannot)?;
        match tmp.persist_noclobber(path) {
            Ok(_) => Token::new(secret.as_bytes()).map(|t| (t, true)),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                Token::from_file(path).map(|t| (t, false))
            }
            Err(e) => Err(cannot(e.error)),
        }
    }
}

/// `n` bytes from the kernel's random source, as hex.
fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The warning for a token given on the command line.
pub const TOKEN_IN_ARGV_WARNING: &str = "warning: --token puts the token in the process list, \
     where other local users can read it with `ps`; prefer --token-file FILE or RCMD_TOKEN";

/// Why the server will not listen where it was asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExposureError {
    /// No token: anyone who can connect (on loopback, every local user) could run commands.
    NeedsToken {
        addr: SocketAddr,
        protocol: &'static str,
    },
    /// A token was given for a mode that has no way to carry one.
    TokenUnsupported { protocol: &'static str },
    /// `--plaintext` beyond loopback: the token would cross the network readable.
    Plaintext { addr: SocketAddr },
}

impl fmt::Display for ExposureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExposureError::NeedsToken { addr, protocol } => {
                let who = if addr.ip().is_loopback() {
                    "every local user (and any web page a local browser opens) could"
                } else {
                    "anyone who can reach it could"
                };
                write!(f, "refusing to listen on {addr} without a token: {who} run commands as this user. ")?;
                if *protocol == "framed" {
                    f.write_str(
                        "Set one with --token-file FILE or RCMD_TOKEN, or pass \
                         --allow-unauthenticated if every such peer is trusted",
                    )
                } else {
                    write!(
                        f,
                        "The {protocol} mode cannot carry a token: use --protocol framed, or \
                         pass --allow-unauthenticated if every such peer is trusted"
                    )
                }
            }
            ExposureError::Plaintext { addr } => write!(
                f,
                "refusing to listen on {addr} with --plaintext: the token, every command \
                 and its output would cross the network readable, and anyone on the path \
                 could take the connection over. Drop --plaintext (TLS is the default), or \
                 add --allow-unauthenticated if every network in between is trusted"
            ),
            ExposureError::TokenUnsupported { protocol } => write!(
                f,
                "the {protocol} mode has no way to carry a token; use --protocol framed, or \
                 --allow-unauthenticated without a token"
            ),
        }
    }
}

impl std::error::Error for ExposureError {}

/// Decides whether a server may listen on `addrs`: with a token (framed mode only), or
/// without one only when explicitly allowed, on loopback too, since every local user can
/// reach loopback. Returns the warning to show when the server will run without a token.
///
/// # Errors
/// An [`ExposureError`] saying what to do instead.
pub fn check_exposure(
    addrs: &[SocketAddr],
    protocol: crate::wire::Protocol,
    has_token: bool,
    allow_unauthenticated: bool,
) -> Result<Option<String>, ExposureError> {
    if has_token && protocol != crate::wire::Protocol::Framed {
        return Err(ExposureError::TokenUnsupported {
            protocol: protocol.name(),
        });
    }
    if has_token {
        return Ok(None);
    }
    let Some(first) = addrs.first() else {
        return Ok(None);
    };
    // The widest exposure is the one to describe.
    let exposed = addrs.iter().find(|a| !a.ip().is_loopback());
    if exposed.is_none() && protocol != crate::wire::Protocol::Framed && !allow_unauthenticated {
        // The tutorial's own wire has no room for a token. On loopback it stays usable
        // for learning (the learner's Python programs speak it), with the risk said.
        return Ok(Some(format!(
            "warning: the {} mode cannot authenticate: while this server runs, every local \
             user can run commands as this user. It is for learning; use --protocol framed \
             for anything else",
            protocol.name()
        )));
    }
    if !allow_unauthenticated {
        return Err(ExposureError::NeedsToken {
            addr: *exposed.unwrap_or(first),
            protocol: protocol.name(),
        });
    }
    Ok(Some(match exposed {
        Some(addr) => format!(
            "WARNING: listening on {addr} with NO authentication: anyone who can reach \
             this port can run any command as this user"
        ),
        None => "WARNING: NO authentication (--allow-unauthenticated): every local user, \
                 and any web page a local browser opens, can run any command as this user"
            .to_string(),
    }))
}

/// Decides whether a framed server may listen on `addrs` without TLS: on loopback only,
/// unless explicitly allowed. Checked before binding, so a refused address is never opened.
///
/// # Errors
/// [`ExposureError::Plaintext`] naming the first address beyond loopback.
pub fn check_plaintext(
    addrs: &[SocketAddr],
    allow_unauthenticated: bool,
) -> Result<(), ExposureError> {
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        Some(addr) if !allow_unauthenticated => Err(ExposureError::Plaintext { addr: *addr }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Protocol;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn token_matches_only_itself() {
        let t = Token::new(b"s3cret").unwrap();
        assert!(t.matches(b"s3cret"));
        for wrong in [
            &b""[..],
            b"s3cre",
            b"s3cret\0",
            b"s3cret!",
            b"S3cret",
            &[0u8; 2000],
        ] {
            assert!(!t.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn zero_padding_is_not_mistaken_for_the_token() {
        // The stored token is zero-padded; an offer with trailing zeros must still fail.
        let t = Token::new(b"ab").unwrap();
        assert!(!t.matches(b"ab\0\0"));
    }

    #[test]
    fn token_debug_hides_the_secret() {
        let t = Token::new(b"hunter2").unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn token_sources_in_order_of_preference() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pick = |v: Option<&str>, f: Option<&Path>, e: Option<&str>| {
            Token::from_sources(v, f, e.map(String::from))
                .unwrap()
                .map(|t| t.as_bytes().to_vec())
        };
        assert_eq!(
            pick(Some("flag"), Some(&file), Some("env")),
            Some(b"flag".to_vec())
        );
        assert_eq!(
            pick(None, Some(&file), Some("env")),
            Some(b"from-file".to_vec())
        );
        assert_eq!(pick(None, None, Some("env")), Some(b"env".to_vec()));
        assert_eq!(pick(None, None, Some("")), None);
        assert_eq!(pick(None, None, None), None);
        assert!(Token::from_sources(None, Some(&dir.path().join("missing")), None).is_err());
    }

    #[test]
    fn token_file_others_can_access_is_refused_with_the_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Token::from_file(&file).unwrap_err().to_string();
            assert!(
                err.contains(&format!("chmod 600 {}", file.display())),
                "{mode:o}: {err}"
            );
            assert!(!err.contains("s3cret"));
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(Token::from_file(&file).unwrap().matches(b"s3cret"));
        }
    }

    #[test]
    fn unreadable_token_file_keeps_the_os_error_as_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("missing");
        let err = Token::from_file(&file).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read token file {}: ", file.display())),
            "{err}"
        );
        let source = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .expect("the io::Error is kept");
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn token_file_is_created_0600_once_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let (made, created) = Token::from_file_or_create(&file).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.len(), 65, "64 hex digits and a newline: {text:?}");
        assert!(made.matches(text.trim_end().as_bytes()));
        let (again, created) = Token::from_file_or_create(&file).unwrap();
        assert!(!created);
        assert!(again.matches(made.as_bytes()));
        // No stray temporary file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let (other, _) = Token::from_file_or_create(&dir.path().join("other")).unwrap();
        assert!(!other.matches(made.as_bytes()), "each token is random");
    }

    #[test]
    fn no_token_needs_explicit_permission_even_on_loopback() {
        let lo = [addr("127.0.0.1:9000"), addr("[::1]:9000")];
        assert!(matches!(
            check_exposure(&lo, Protocol::Framed, false, false),
            Err(ExposureError::NeedsToken { .. })
        ));
        assert_eq!(check_exposure(&lo, Protocol::Framed, true, false), Ok(None));
        let warning = check_exposure(&lo, Protocol::Framed, false, true).unwrap();
        assert!(warning.unwrap().contains("every local user"));
        let any = [addr("0.0.0.0:9000")];
        let err = check_exposure(&any, Protocol::Framed, false, false).unwrap_err();
        assert!(err.to_string().contains("anyone who can reach it"), "{err}");
        assert_eq!(
            check_exposure(&any, Protocol::Framed, true, false),
            Ok(None)
        );
        let warning = check_exposure(&any, Protocol::Classic, false, true).unwrap();
        assert!(warning.unwrap().contains("NO authentication"));
    }

    #[test]
    fn plaintext_only_on_loopback_unless_allowed() {
        assert!(check_plaintext(&[addr("127.0.0.1:9000"), addr("[::1]:9000")], false).is_ok());
        let err = check_plaintext(&[addr("0.0.0.0:9000")], false).unwrap_err();
        assert!(err.to_string().contains("--plaintext"), "{err}");
        assert!(check_plaintext(&[addr("0.0.0.0:9000")], true).is_ok());
    }

    #[test]
    fn modes_without_a_token_field_refuse_one() {
        let lo = [addr("127.0.0.1:9000")];
        for p in [Protocol::Classic, Protocol::JsonHeader, Protocol::Naive] {
            assert!(matches!(
                check_exposure(&lo, p, true, false),
                Err(ExposureError::TokenUnsupported { .. })
            ));
        }
        // On loopback they run, for learning, saying who else can use them.
        let warning = check_exposure(&lo, Protocol::Naive, false, false).unwrap();
        assert!(warning.unwrap().contains("every local user"));
        // Beyond loopback only when explicitly allowed.
        let any = [addr("0.0.0.0:9000")];
        let err = check_exposure(&any, Protocol::Naive, false, false).unwrap_err();
        assert!(err.to_string().contains("cannot carry a token"), "{err}");
        assert!(check_exposure(&any, Protocol::Naive, false, true).is_ok());
    }
}
