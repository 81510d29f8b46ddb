//! rcmd's own directory, and the one place that knows the paths inside it.
//!
//! `$RCMD_HOME`, else `$XDG_CONFIG_HOME/rcmd`, else `~/.config/rcmd`. It holds the same-user
//! token (`token`), the server identity (`identity.pem`), the client key (`client.pem`)
//! and the trusted servers (`known_hosts`). Whoever can write to it can replace what rcmd trusts, so it is created
//! 0700 and refused when group or others may write to it.

use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// rcmd's configuration directory (it may not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDir {
    path: PathBuf,
}

/// A configuration directory or trusted file that cannot be found, made or trusted.
#[derive(Debug)]
pub enum ConfigError {
    /// None of `RCMD_HOME`, `XDG_CONFIG_HOME` and `HOME` is set.
    NoHome,
    /// The directory could not be made, read or given its mode (`action` says which).
    Dir {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// The directory's path names something else.
    NotDir { path: PathBuf },
    /// The directory belongs to another user.
    DirOtherOwner { path: PathBuf, uid: u32 },
    /// Group or others may write to the directory.
    DirWritable { path: PathBuf, mode: u32 },
    /// A trusted file (`what`) or its directory could not be read.
    Read {
        path: PathBuf,
        what: String,
        source: io::Error,
    },
    /// A trusted file (`what`) or its directory belongs to another user.
    OtherOwner {
        path: PathBuf,
        what: String,
        uid: u32,
    },
    /// Others may write to a trusted file (`what`), or read a secret one.
    Exposed {
        path: PathBuf,
        what: String,
        mode: u32,
        secret: bool,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = |path: &Path| shell_words::quote(&path.to_string_lossy()).into_owned();
        match self {
            ConfigError::NoHome => {
                f.write_str("cannot find rcmd's configuration directory: set RCMD_HOME or HOME")
            }
            ConfigError::Dir {
                path,
                action,
                source,
            } => write!(
                f,
                "cannot {action} rcmd's configuration directory {}: {source}",
                path.display()
            ),
            ConfigError::NotDir { path } => write!(
                f,
                "{} is not a directory (rcmd's configuration directory; set RCMD_HOME to \
                 use another)",
                path.display()
            ),
            ConfigError::DirOtherOwner { path, uid } => write!(
                f,
                "{} belongs to another user (uid {uid}), whose token and identity rcmd would \
                 then trust; use a directory of your own (RCMD_HOME)",
                path.display()
            ),
            ConfigError::DirWritable { path, mode } => write!(
                f,
                "{} can be written by other users (mode {mode:04o}), who could replace \
                 the token rcmd trusts; run: chmod 700 {}",
                path.display(),
                quoted(path)
            ),
            ConfigError::Read { path, what, source } => {
                write!(f, "cannot read {what} {}: {source}", path.display())
            }
            ConfigError::OtherOwner { path, what, uid } => write!(
                f,
                "refusing {what} {}: it belongs to another user (uid {uid}), who could put in \
                 it what rcmd would trust (sshd's StrictModes refuses it too); use a file of \
                 your own",
                path.display()
            ),
            ConfigError::Exposed {
                path,
                what,
                mode,
                secret,
            } => {
                let (who, then, fix) = if *secret {
                    (
                        "read or written by other users",
                        "take the key it holds",
                        "go-rwx",
                    )
                } else {
                    ("written by other users", "change what rcmd trusts", "go-w")
                };
                write!(
                    f,
                    "refusing {what} {}: it can be {who} (mode {mode:04o}), who could then \
                     {then}; run: chmod {fix} {}",
                    path.display(),
                    quoted(path)
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Dir { source, .. } | ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ConfigDir {
    /// The directory this process's environment points to.
    ///
    /// # Errors
    /// If none of `RCMD_HOME`, `XDG_CONFIG_HOME` and `HOME` is set.
    pub fn locate() -> Result<ConfigDir, ConfigError> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        Self::from_vars(var("RCMD_HOME"), var("XDG_CONFIG_HOME"), var("HOME"))
    }

    /// The directory for these variables, in order of preference.
    ///
    /// # Errors
    /// If all three are missing.
    pub fn from_vars(
        rcmd_home: Option<impl Into<PathBuf>>,
        xdg_config_home: Option<impl Into<PathBuf>>,
        home: Option<impl Into<PathBuf>>,
    ) -> Result<ConfigDir, ConfigError> {
        let path = if let Some(p) = rcmd_home {
            p.into()
        } else if let Some(p) = xdg_config_home {
            p.into().join("rcmd")
        } else if let Some(p) = home {
            p.into().join(".config").join("rcmd")
        } else {
            return Err(ConfigError::NoHome);
        };
        Ok(ConfigDir { path })
    }

    /// A directory at `path`.
    #[cfg(test)]
    pub fn at(path: impl Into<PathBuf>) -> ConfigDir {
        ConfigDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same-user token: the server creates it, clients of the same user read it.
    pub fn token_file(&self) -> PathBuf {
        self.path.join("token")
    }

    /// This machine's server identity (certificate and key, PEM): the server creates it.
    pub fn identity_file(&self) -> PathBuf {
        self.path.join("identity.pem")
    }

    /// This user's client key (certificate and key, PEM), made by `rcmd keygen`.
    pub fn client_key_file(&self) -> PathBuf {
        self.path.join("client.pem")
    }

    /// The client keys this user's server accepts without a token.
    pub fn authorized_keys_file(&self) -> PathBuf {
        self.path.join("authorized_keys")
    }

    /// Per-host settings for the client, as ssh's `~/.ssh/config`.
    pub fn settings_file(&self) -> PathBuf {
        self.path.join("config")
    }

    /// The servers this user trusts: `host:port` and a fingerprint per line.
    pub fn known_hosts_file(&self) -> PathBuf {
        self.path.join("known_hosts")
    }

    /// Makes sure the directory exists (created 0700, parents as needed) and that nobody
    /// else may write to it.
    ///
    /// # Errors
    /// If it cannot be created, or group or others may write to it.
    pub fn create(&self) -> Result<&Path, ConfigError> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.error("create", e))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.path) {
            Ok(()) => {
                // The umask may have taken bits away; never more than 0700 is asked for.
                std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| self.error("set permissions on", e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.error("create", e)),
        }
        self.check()?;
        Ok(&self.path)
    }

    /// Whether the directory exists, after checking that nobody else may write to it.
    ///
    /// # Errors
    /// If it exists but is not a directory only its owner may write to.
    pub fn existing(&self) -> Result<bool, ConfigError> {
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.error("read", e)),
            Ok(_) => self.check().map(|()| true),
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| self.error("read", e))?;
        if !meta.is_dir() {
            return Err(ConfigError::NotDir {
                path: self.path.clone(),
            });
        }
        // Another user's directory, even one closed to others, holds their token and
        // identity, not ours: trusting it would trust them (as ssh's StrictModes refuses).
        if !owned_by_us(&meta) {
            return Err(ConfigError::DirOtherOwner {
                path: self.path.clone(),
                uid: std::os::unix::fs::MetadataExt::uid(&meta),
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(ConfigError::DirWritable {
                path: self.path.clone(),
                mode,
            });
        }
        Ok(())
    }

    fn error(&self, action: &'static str, source: io::Error) -> ConfigError {
        ConfigError::Dir {
            path: self.path.clone(),
            action,
            source,
        }
    }
}

/// Checks a file rcmd trusts (a key, `known_hosts`, `authorized_keys`, `config`) as sshd's
/// StrictModes does: it and the directory it is in must belong to this user (or root) and
/// be writable by nobody else, or another user could have put in it what rcmd then
/// trusts; a `secret` (a private key) must also be readable by nobody else. `what` names
/// the file in the message. Checked on the path as it is opened, following links.
///
/// # Errors
/// A [`ConfigError`] saying what is wrong and the command that fixes it.
pub fn check_trust_file(path: &Path, what: &str, secret: bool) -> Result<(), ConfigError> {
    let cannot = |source| ConfigError::Read {
        path: path.to_path_buf(),
        what: what.to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(cannot)?;
    check_owner_and_mode(path, &meta, what, if secret { 0o077 } else { 0o022 })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir_meta = std::fs::metadata(dir).map_err(cannot)?;
    check_owner_and_mode(dir, &dir_meta, &format!("the directory of {what}"), 0o022)
}

/// Refuses `meta` (of `path`) when it belongs to another user than us or root, or has any
/// of the mode bits `forbidden`.
fn check_owner_and_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    what: &str,
    forbidden: u32,
) -> Result<(), ConfigError> {
    let uid = std::os::unix::fs::MetadataExt::uid(meta);
    if uid != 0 && !owned_by_us(meta) {
        return Err(ConfigError::OtherOwner {
            path: path.to_path_buf(),
            what: what.to_string(),
            uid,
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & forbidden != 0 {
        return Err(ConfigError::Exposed {
            path: path.to_path_buf(),
            what: what.to_string(),
            mode,
            secret: forbidden & 0o044 != 0,
        });
    }
    Ok(())
}

/// Whether a file or directory belongs to the user this process runs as.
pub fn owned_by_us(meta: &std::fs::Metadata) -> bool {
    std::os::unix::fs::MetadataExt::uid(meta) == rustix::process::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcmd_home_then_xdg_then_home() {
        let dir = |r: Option<&str>, x: Option<&str>, h: Option<&str>| {
            ConfigDir::from_vars(r, x, h).map(|d| d.path().to_path_buf())
        };
        assert_eq!(
            dir(Some("/r"), Some("/x"), Some("/h")).unwrap(),
            PathBuf::from("/r")
        );
        assert_eq!(
            dir(None, Some("/x"), Some("/h")).unwrap(),
            PathBuf::from("/x/rcmd")
        );
        assert_eq!(
            dir(None, None, Some("/h")).unwrap(),
            PathBuf::from("/h/.config/rcmd")
        );
        assert!(dir(None, None, None).is_err());
    }

    #[test]
    fn created_0700_with_its_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::at(tmp.path().join("a/b/rcmd"));
        assert!(!dir.existing().unwrap());
        dir.create().unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(dir.existing().unwrap());
        assert_eq!(dir.token_file(), tmp.path().join("a/b/rcmd/token"));
    }

    #[test]
    fn trust_files_are_checked_as_strict_modes_does() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("authorized_keys");
        std::fs::write(&file, "").unwrap();
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(&dir, 0o755);
        set(&file, 0o644);
        assert!(check_trust_file(&file, "authorized keys", false).is_ok());
        let err = check_trust_file(&file, "the key", true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("chmod go-rwx {}", file.display())),
            "{err}"
        );
        set(&file, 0o666);
        let err = check_trust_file(&file, "authorized keys", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("chmod go-w {}", file.display())),
            "{err}"
        );
        set(&file, 0o600);
        set(&dir, 0o777);
        let err = check_trust_file(&file, "authorized keys", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("chmod go-w {}", dir.display())),
            "{err}"
        );
        set(&dir, 0o700);
        // Another user's file (only root can make one here).
        if std::os::unix::fs::chown(&file, Some(65534), None).is_ok() {
            let err = check_trust_file(&file, "authorized keys", false)
                .unwrap_err()
                .to_string();
            assert!(err.contains("another user (uid 65534)"), "{err}");
        }
    }

    #[test]
    fn a_directory_others_may_write_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rcmd");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o775)).unwrap();
        let dir = ConfigDir::at(&path);
        let err = dir.create().unwrap_err().to_string();
        assert!(
            err.contains(&format!("chmod 700 {}", path.display())),
            "{err}"
        );
        assert!(dir.existing().is_err());
    }
}
