//! Per-host client settings: the file `config` in rcmd's configuration directory, read as
//! ssh reads `~/.ssh/config`.
//!
//! ```text
//! # settings before any Host line apply to every host
//! ConnectTimeout 5
//!
//! Host web web.lan          # patterns: * and ? match, !pattern excludes
//!     HostName 10.0.0.5
//!     Port 9001
//!     Fingerprint SHA256:Wd6t3I6uFhk0VvZ7kqB2n6ZxJd0c1Hf7Yt3oQnF8p2A
//!     TokenFile ~/.config/rcmd/web.token
//!     IdentityFile ~/.config/rcmd/work.pem
//!     SendEnv LANG LC_*
//!     SetEnv TZ=UTC
//!     Header <I               # the wire options, as --header, --protocol,
//!     Protocol framed         # --max-frame and --recv-size
//!     MaxFrame 1048576
//!     RecvSize 1024
//! ```
//!
//! Keywords are case-insensitive and take `Key value` or `Key=value`. For each setting
//! the first value found for a matching host wins, as in ssh, so specific hosts go first
//! and `Host *` last; the command line overrides them all. A line that cannot be read is
//! an error naming the file and the line, never skipped. The file must pass sshd's
//! StrictModes checks ([`crate::config::check_trust_file`]): it decides whom to trust.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tls::Fingerprint;
use clap::ValueEnum;

use crate::wire::header::HeaderFormat;
use crate::wire::Protocol;

/// The settings that apply to one host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSettings {
    pub host_name: Option<String>,
    pub port: Option<u16>,
    pub fingerprint: Option<Fingerprint>,
    pub token_file: Option<PathBuf>,
    pub identity_file: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
    /// Names of our variables to send (`*` and `?` match), as ssh's SendEnv.
    pub send_env: Vec<String>,
    /// `NAME=VALUE` to set, as ssh's SetEnv.
    pub set_env: Vec<String>,
    pub header: Option<HeaderFormat>,
    pub protocol: Option<Protocol>,
    pub max_frame: Option<usize>,
    pub recv_size: Option<usize>,
}

/// A settings file as read: each `Host` block's patterns and its lines.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
struct Block {
    /// `None`: the lines before any `Host`, for every host.
    patterns: Option<Vec<String>>,
    lines: Vec<(usize, String, String)>,
}

/// A settings file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

const KEYWORDS: &[&str] = &[
    "hostname",
    "port",
    "fingerprint",
    "tokenfile",
    "identityfile",
    "connecttimeout",
    "sendenv",
    "setenv",
    "header",
    "protocol",
    "maxframe",
    "recvsize",
];

impl Settings {
    /// The file at `path`; none there means no settings.
    ///
    /// # Errors
    /// If it cannot be read or trusted, or a line is not a known setting with a value
    /// that parses (checked for every host, so a typo is found before it matters).
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => {
                return Err(SettingsError(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        crate::config::check_trust_file(path, "the settings file", false)
            .map_err(|e| SettingsError(e.0))?;
        Settings::parse(&text, path)
    }

    /// Settings from `text`, read from `path` (for messages).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Settings, SettingsError> {
        let mut blocks = vec![Block {
            patterns: None,
            lines: Vec::new(),
        }];
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let bad =
                |why: String| SettingsError(format!("{} line {line_no}: {why}", path.display()));
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = match line.split_once(|c: char| c == '=' || c.is_whitespace()) {
                Some((k, v)) => (k.trim(), v.trim().trim_start_matches('=').trim()),
                None => (line, ""),
            };
            let key = key.to_ascii_lowercase();
            if value.is_empty() {
                return Err(bad(format!("{key:?} needs a value")));
            }
            if key == "host" {
                blocks.push(Block {
                    patterns: Some(value.split_whitespace().map(String::from).collect()),
                    lines: Vec::new(),
                });
                continue;
            }
            if !KEYWORDS.contains(&key.as_str()) {
                return Err(bad(format!(
                    "unknown setting {key:?}; known: Host, HostName, Port, Fingerprint, \
                     TokenFile, IdentityFile, ConnectTimeout, SendEnv, SetEnv, Header, \
                     Protocol, MaxFrame, RecvSize"
                )));
            }
            // Checked now, for whichever host it will apply to.
            apply(&mut HostSettings::default(), &key, value).map_err(bad)?;
            blocks.last_mut().expect("one block at least").lines.push((
                line_no,
                key,
                value.to_string(),
            ));
        }
        Ok(Settings { blocks })
    }

    /// The names `Host` lines give that stand for one host (no `*`, `?` or `!`): what a
    /// user may type for them, and what shell completion offers.
    pub fn aliases(&self) -> Vec<String> {
        self.blocks
            .iter()
            .filter_map(|b| b.patterns.as_ref())
            .flatten()
            .filter(|p| !p.contains(['*', '?', '!']))
            .cloned()
            .collect()
    }

    /// The settings for `host` (as typed: an alias, a name or an address, no port).
    pub fn for_host(&self, host: &str) -> HostSettings {
        let mut out = HostSettings::default();
        let mut seen: Vec<&str> = Vec::new();
        for block in &self.blocks {
            if !block
                .patterns
                .as_ref()
                .is_none_or(|p| matches_host(p, host))
            {
                continue;
            }
            for (_, key, value) in &block.lines {
                // First value wins; SendEnv and SetEnv add up, as in ssh.
                let repeats = key == "sendenv" || key == "setenv";
                if repeats || !seen.contains(&key.as_str()) {
                    let _ = apply(&mut out, key, value);
                    seen.push(key);
                }
            }
        }
        out
    }
}

/// Sets `key` to `value` in `s`.
fn apply(s: &mut HostSettings, key: &str, value: &str) -> Result<(), String> {
    match key {
        "hostname" => s.host_name = Some(value.to_string()),
        "port" => {
            s.port = Some(
                value
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("Port {value:?} is not a port from 1 to 65535"))?,
            )
        }
        "fingerprint" => s.fingerprint = Some(value.parse()?),
        "tokenfile" => s.token_file = Some(expand_home(value)),
        "identityfile" => s.identity_file = Some(expand_home(value)),
        "connecttimeout" => {
            s.connect_timeout = Some(
                value
                    .parse::<f64>()
                    .ok()
                    .and_then(|v| Duration::try_from_secs_f64(v).ok())
                    .ok_or_else(|| {
                        format!("ConnectTimeout {value:?} is not a number of seconds")
                    })?,
            )
        }
        "sendenv" => s
            .send_env
            .extend(value.split_whitespace().map(String::from)),
        "setenv" => {
            for pair in value.split_whitespace() {
                if pair.split_once('=').is_none_or(|(n, _)| n.is_empty()) {
                    return Err(format!("SetEnv {pair:?} is not NAME=VALUE"));
                }
                s.set_env.push(pair.to_string());
            }
        }
        "header" => {
            s.header = Some(
                value
                    .parse()
                    .map_err(|e| format!("Header {value:?}: {e}"))?,
            )
        }
        "protocol" => {
            s.protocol = Some(
                <Protocol as clap::ValueEnum>::from_str(value, true).map_err(|_| {
                    let names: Vec<&str> = Protocol::value_variants()
                        .iter()
                        .map(|p| p.name())
                        .collect();
                    format!("Protocol {value:?} is not one of {}", names.join(", "))
                })?,
            )
        }
        "maxframe" => s.max_frame = Some(whole(value, "MaxFrame", 1024)?),
        "recvsize" => s.recv_size = Some(whole(value, "RecvSize", 1)?),
        _ => return Err(format!("unknown setting {key:?}")),
    }
    Ok(())
}

/// `value` as a number of bytes from `min` to 2³²−1, as the command line takes it.
fn whole(value: &str, key: &str, min: usize) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|v| (min..=u32::MAX as usize).contains(v))
        .ok_or_else(|| format!("{key} {value:?} is not a number from {min} to {}", u32::MAX))
}

/// `~/x` under `$HOME`, as ssh expands it.
fn expand_home(value: &str) -> PathBuf {
    match (value.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(value),
    }
}

/// Whether `host` matches a `Host` line: some pattern matches and no `!pattern` does.
fn matches_host(patterns: &[String], host: &str) -> bool {
    let mut any = false;
    for p in patterns {
        if let Some(negated) = p.strip_prefix('!') {
            if glob(negated, host) {
                return false;
            }
        } else if glob(p, host) {
            any = true;
        }
    }
    any
}

/// `*` and `?` wildcards, case-insensitively, as ssh matches host patterns.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, SettingsError> {
        Settings::parse(text, Path::new("/cfg"))
    }

    #[test]
    fn first_match_wins_per_setting_and_patterns_match() {
        let s = parse(
            "ConnectTimeout 5\n\
             Host web\n  HostName 127.0.0.7\n  Port 9001\n\
             Host *.lan !bad.lan\n  Port=9002\n  SendEnv LANG\n\
             Host *\n  Port 9003\n  SendEnv LC_*\n  ConnectTimeout 9\n",
        )
        .unwrap();
        let web = s.for_host("web");
        assert_eq!(web.host_name.as_deref(), Some("127.0.0.7"));
        assert_eq!(web.port, Some(9001));
        assert_eq!(web.connect_timeout, Some(Duration::from_secs(5)));
        let lan = s.for_host("a.LAN");
        assert_eq!((lan.host_name, lan.port), (None, Some(9002)));
        assert_eq!(lan.send_env, ["LANG", "LC_*"]);
        assert_eq!(s.for_host("bad.lan").port, Some(9003));
        assert_eq!(s.for_host("other").port, Some(9003));
    }

    #[test]
    fn wire_options_are_settings_too() {
        let s = parse(
            "Host old\n  Protocol Classic\n  Header <H\n  RecvSize 64\nHost *\n  MaxFrame 4096\n",
        )
        .unwrap();
        let old = s.for_host("old");
        assert_eq!(old.protocol, Some(Protocol::Classic));
        assert_eq!(old.header, Some("<H".parse().unwrap()));
        assert_eq!((old.recv_size, old.max_frame), (Some(64), Some(4096)));
        assert_eq!(s.for_host("new").protocol, None);
    }

    #[test]
    fn a_bad_line_is_an_error_naming_file_and_line() {
        for (text, says) in [
            (
                "Host a\n  Prot 9000\n",
                "/cfg line 2: unknown setting \"prot\"",
            ),
            ("Port 0\n", "/cfg line 1: Port"),
            ("\n\nFingerprint SHA256:x\n", "/cfg line 3"),
            ("Host\n", "/cfg line 1: \"host\" needs a value"),
            ("SetEnv X\n", "/cfg line 1: SetEnv"),
            (
                "Protocol udp\n",
                "/cfg line 1: Protocol \"udp\" is not one of framed",
            ),
            (
                "MaxFrame 1023\n",
                "/cfg line 1: MaxFrame \"1023\" is not a number from 1024",
            ),
            ("RecvSize 0\n", "/cfg line 1: RecvSize"),
        ] {
            let err = parse(text).unwrap_err().0;
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn globs_match_as_ssh_does() {
        assert!(glob("*.lan", "a.lan") && glob("web?", "web1") && glob("*", ""));
        assert!(!glob("*.lan", "a.lab") && !glob("web?", "web12"));
    }
}
