//! Which environment variables a client may set for its commands (`--accept-env`), as
//! sshd's `AcceptEnv` decides it: names matched against patterns with `*` and `?`.

/// What Debian's sshd accepts by default: the locale, nothing that changes how programs
/// are found or loaded (`PATH`, `LD_PRELOAD`).
pub const DEFAULT_ACCEPT: &[&str] = &["LANG", "LC_*"];

/// Whether `name` is a variable name a command may be given and `patterns` accept it.
pub fn accepted(patterns: &[String], name: &[u8]) -> bool {
    valid_name(name) && patterns.iter().any(|p| glob(p.as_bytes(), name))
}

/// A name the environment can hold: not empty, no `=` and no NUL.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.contains(&b'=') && !name.contains(&0)
}

/// Matches `text` against `pattern`, where `*` is any run of bytes and `?` any one byte.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative, with one backtrack point: linear in practice, never exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_accepts_the_locale_only() {
        let d: Vec<String> = DEFAULT_ACCEPT.iter().map(|s| s.to_string()).collect();
        for ok in ["LANG", "LC_ALL", "LC_CTYPE", "LC_"] {
            assert!(accepted(&d, ok.as_bytes()), "{ok}");
        }
        for no in [
            "PATH",
            "LD_PRELOAD",
            "LANGUAGE",
            "XLC_ALL",
            "",
            "LC_A=B",
            "LC_\0",
        ] {
            assert!(!accepted(&d, no.as_bytes()), "{no:?}");
        }
    }

    #[test]
    fn wildcards_match_like_sshd() {
        assert!(glob(b"A?C*", b"ABCDEF"));
        assert!(glob(b"*", b""));
        assert!(glob(b"*X*Y", b"aaXbbXccY"));
        assert!(!glob(b"*X*Y", b"aaXbbYcc"));
        assert!(!glob(b"A", b"AB"));
    }
}
