//! Who may run commands: the shared token, and the rule for when one is required.
//!
//! A server that runs commands from the network is a remote shell, so it listens on
//! loopback unless told otherwise, and anywhere else it needs a token (or an explicit
//! `--allow-unauthenticated`). The token travels in the client's hello and is compared in
//! constant time, without revealing its length through timing.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

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

/// A token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(pub String);

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TokenError {}

impl Token {
    /// A token from its text.
    ///
    /// # Errors
    /// If it is empty or longer than [`MAX_TOKEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Token, TokenError> {
        if secret.is_empty() {
            return Err(TokenError("the token is empty".into()));
        }
        if secret.len() > MAX_TOKEN {
            return Err(TokenError(format!(
                "the token is {} bytes; at most {MAX_TOKEN} are allowed",
                secret.len()
            )));
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
        let secret: Vec<u8> = if let Some(v) = value {
            v.as_bytes().to_vec()
        } else if let Some(path) = file {
            let mut bytes = std::fs::read(path).map_err(|e| {
                TokenError(format!("cannot read token file {}: {e}", path.display()))
            })?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            bytes
        } else if let Some(v) = env.filter(|v| !v.is_empty()) {
            v.into_bytes()
        } else {
            return Ok(None);
        };
        Token::new(&secret).map(Some)
    }
}

/// Why the server will not listen where it was asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExposureError {
    /// Not loopback and no token: anyone who can reach the port could run commands.
    NeedsToken { addr: SocketAddr },
    /// A token was given for a mode that has no way to carry one.
    TokenUnsupported { protocol: &'static str },
}

impl fmt::Display for ExposureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExposureError::NeedsToken { addr } => write!(
                f,
                "refusing to listen on {addr} without a token: anyone who can reach it could \
                 run commands as this user. Set one with --token-file FILE, RCMD_TOKEN or \
                 --token (framed mode), or pass --allow-unauthenticated if this network is \
                 trusted"
            ),
            ExposureError::TokenUnsupported { protocol } => write!(
                f,
                "the {protocol} mode has no way to carry a token; use --protocol framed, or \
                 listen on loopback without one"
            ),
        }
    }
}

impl std::error::Error for ExposureError {}

/// Decides whether a server may listen on `addrs`: loopback always; anything else only with
/// a token (framed mode) or when explicitly allowed. Returns a warning to show when the
/// server will be open to the network without a token.
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
    let Some(exposed) = addrs.iter().find(|a| !a.ip().is_loopback()) else {
        return Ok(None);
    };
    match (has_token, allow_unauthenticated) {
        (true, _) => Ok(None),
        (false, true) => Ok(Some(format!(
            "WARNING: listening on {exposed} with NO authentication: anyone who can reach \
             this port can run any command as this user"
        ))),
        (false, false) => Err(ExposureError::NeedsToken { addr: *exposed }),
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
    fn loopback_needs_no_token_anything_else_does() {
        let lo = [addr("127.0.0.1:9000"), addr("[::1]:9000")];
        assert_eq!(
            check_exposure(&lo, Protocol::Framed, false, false),
            Ok(None)
        );
        let any = [addr("0.0.0.0:9000")];
        assert!(matches!(
            check_exposure(&any, Protocol::Framed, false, false),
            Err(ExposureError::NeedsToken { .. })
        ));
        assert_eq!(
            check_exposure(&any, Protocol::Framed, true, false),
            Ok(None)
        );
        let warning = check_exposure(&any, Protocol::Classic, false, true).unwrap();
        assert!(warning.unwrap().contains("NO authentication"));
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
        let any = [addr("10.1.2.3:9000")];
        assert!(check_exposure(&any, Protocol::Naive, false, false).is_err());
    }
}
