//! The TLS options of both ends, and where their keys and trust files come from: the
//! server's identity and the client's key in rcmd's configuration directory (or files
//! given), the client's `known_hosts` there too.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::config::ConfigDir;
use crate::tls::authorized::AuthorizedKeys;
use crate::tls::identity::fingerprint_file;
use crate::tls::{ClientTls, Fingerprint, Identity, NewHost, ServerTls};
use crate::wire::Protocol;

/// The server's TLS options.
#[derive(Debug, Args)]
pub(super) struct ServerTlsArgs {
    /// Speak the framed protocol without TLS, for teaching and Wireshark: the token, the
    /// commands and their output cross the network readable. Loopback only, unless
    /// --allow-unauthenticated is also given
    #[arg(long)]
    plaintext: bool,

    /// The server's identity (certificate and key, PEM, mode 0600)
    /// [default: identity.pem in rcmd's configuration directory, made on first start]
    #[arg(long, value_name = "FILE", conflicts_with = "plaintext")]
    identity: Option<PathBuf>,

    /// Client keys that are authentication enough, no token needed: a fingerprint per
    /// line, then a comment (`rcmd copy-id` adds them). Read again whenever it changes;
    /// it and its directory must be writable by this user only. This user's own client
    /// key (`rcmd keygen`) is accepted without being listed
    /// [default: authorized_keys in rcmd's configuration directory]
    #[arg(long, value_name = "FILE", conflicts_with = "plaintext")]
    authorized_keys: Option<PathBuf>,

    /// Accept only client keys: a client without an authorized key is refused, whatever
    /// token it sends
    #[arg(long, conflicts_with = "plaintext")]
    keys_only: bool,
}

/// The server's TLS set-up, and what to tell its operator about it.
pub(super) struct ServerTlsSetup {
    pub tls: Arc<ServerTls>,
    /// Where a new identity was just written, if one was.
    pub created: Option<PathBuf>,
}

impl ServerTlsArgs {
    pub(super) fn plaintext(&self) -> bool {
        self.plaintext
    }

    pub(super) fn requires_key(&self) -> bool {
        self.keys_only
    }

    /// TLS for a framed server, unless `--plaintext` (the tutorial modes never use it).
    pub(super) fn setup(&self, protocol: Protocol) -> Result<Option<ServerTlsSetup>, String> {
        if self.plaintext || protocol != Protocol::Framed {
            return Ok(None);
        }
        let dir = ConfigDir::locate().map_err(|e| e.to_string())?;
        let (identity, created) = match &self.identity {
            Some(path) => (Identity::load(path).map_err(|e| e.to_string())?, None),
            None => {
                dir.create().map_err(|e| e.to_string())?;
                let path = dir.identity_file();
                let (id, created) =
                    Identity::load_or_create(&path, "rcmd server").map_err(|e| e.to_string())?;
                (id, created.then_some(path))
            }
        };
        let file = match &self.authorized_keys {
            Some(path) => {
                if !path.exists() {
                    return Err(format!(
                        "--authorized-keys {}: no such file",
                        path.display()
                    ));
                }
                path.clone()
            }
            None => dir.authorized_keys_file(),
        };
        // The same user's own client key, as the same-user token is.
        let own = own_fingerprint(&dir.client_key_file(), "this user's client key")?;
        let authorized = AuthorizedKeys::new(Some(file), own.into_iter().collect())
            .map_err(|e| e.to_string())?;
        let tls = ServerTls::with_keys(&identity, authorized, self.requires_key())
            .map_err(|e| e.to_string())?;
        Ok(Some(ServerTlsSetup {
            tls: Arc::new(tls),
            created,
        }))
    }
}

/// The client's TLS options.
#[derive(Debug, Clone, Args)]
pub(super) struct ClientTlsArgs {
    /// Speak the framed protocol without TLS (to a `rcmd server --plaintext`); only to a
    /// loopback address, unless --allow-unauthenticated is also given
    #[arg(long)]
    plaintext: bool,

    /// With --plaintext, allow a server beyond loopback: the token, the commands and
    /// their output cross the network readable by anyone on the path
    #[arg(long, requires = "plaintext")]
    allow_unauthenticated: bool,

    /// Trust a server not yet in known_hosts and record it there (as ssh's
    /// StrictHostKeyChecking=accept-new); a changed identity is still refused
    #[arg(long, conflicts_with = "plaintext")]
    accept_new: bool,

    /// Present this client key (made by `rcmd keygen --output FILE`, mode 0600) instead of
    /// client.pem in rcmd's configuration directory
    #[arg(long, value_name = "FILE", conflicts_with = "plaintext")]
    key: Option<PathBuf>,

    /// Trust only the server whose identity has this fingerprint (`rcmd fingerprint` on
    /// the server prints it); known_hosts is neither read nor written
    #[arg(long, value_name = "SHA256:...", conflicts_with_all = ["plaintext", "accept_new"])]
    fingerprint: Option<Fingerprint>,
}

impl ClientTlsArgs {
    /// A settings file's `Fingerprint`, unless the command line pinned or accepts anew.
    pub(super) fn default_fingerprint(&mut self, fingerprint: Option<Fingerprint>) {
        if self.fingerprint.is_none() && !self.accept_new && !self.plaintext {
            self.fingerprint = fingerprint;
        }
    }

    /// A settings file's `IdentityFile`, unless --key gave one.
    pub(super) fn default_key(&mut self, key: Option<PathBuf>) {
        if self.key.is_none() {
            self.key = key;
        }
    }

    /// Whether the wire is in the clear (`--plaintext`).
    pub(super) fn plaintext(&self) -> bool {
        self.plaintext
    }

    /// TLS for a framed client, unless `--plaintext`. `ask` says whether a new server may
    /// be asked about (one host); it is, on the controlling terminal, when there is one,
    /// whatever the standard input is: as ssh does, `echo data | rcmd client HOST -- cat`
    /// asks there and forwards `data` whole.
    pub(super) fn setup(&self, protocol: Protocol, ask: bool) -> Result<Option<ClientTls>, String> {
        if self.plaintext || protocol != Protocol::Framed {
            return Ok(None);
        }
        let dir = ConfigDir::locate().ok();
        let existing = match &dir {
            Some(d) => d.existing().map_err(|e| e.to_string())?,
            None => false,
        };
        let file = |f: fn(&ConfigDir) -> PathBuf| dir.as_ref().map(f);
        let key = match &self.key {
            Some(path) => Some(path.clone()),
            None => file(ConfigDir::client_key_file).filter(|p| existing && p.exists()),
        };
        let identity = match key {
            Some(path) => Some(Identity::load(&path).map_err(|e| e.to_string())?),
            None => None,
        };
        let own_server = match file(ConfigDir::identity_file).filter(|_| existing) {
            Some(path) => own_fingerprint(&path, "this machine's server identity")?,
            None => None,
        };
        let new_host = if self.accept_new {
            NewHost::Accept
        } else if ask && crate::tls::prompt::has_terminal() {
            NewHost::Ask
        } else {
            NewHost::Refuse
        };
        if new_host != NewHost::Refuse {
            // known_hosts may be written: the directory must exist (0700).
            if let Some(d) = &dir {
                d.create().map_err(|e| e.to_string())?;
            }
        }
        Ok(Some(ClientTls {
            identity,
            pin: self.fingerprint,
            own_server,
            known_hosts: file(ConfigDir::known_hosts_file),
            new_host,
        }))
    }

    /// Refuses `--plaintext` to an address beyond loopback without
    /// `--allow-unauthenticated`, before anything is sent.
    pub(super) fn check_plaintext(&self, addr: &str) -> Result<(), String> {
        if !self.plaintext || self.allow_unauthenticated {
            return Ok(());
        }
        use std::net::ToSocketAddrs;
        let addr = crate::wire::with_default_port(addr);
        let addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {addr}: {e}"))?
            .collect();
        match addrs.iter().find(|a| !a.ip().is_loopback()) {
            None => Ok(()),
            Some(a) => Err(format!(
                "refusing --plaintext to {a}: the token, the commands and their output would \
                 cross the network readable by anyone on the path. Drop --plaintext (TLS is \
                 the default), or add --allow-unauthenticated if the network is trusted"
            )),
        }
    }
}

/// The fingerprint of an identity file of this user's, if there is one. It proves who
/// "this user" is (the server takes the key as its owner's; the client sends the
/// same-user token to the server holding it), so it must be this user's alone: a copy
/// others could read would let them be that user.
///
/// # Errors
/// When the file exists but others may read it or write to it or its directory.
fn own_fingerprint(path: &std::path::Path, what: &str) -> Result<Option<Fingerprint>, String> {
    if !path.exists() {
        return Ok(None);
    }
    crate::config::check_trust_file(path, what, true).map_err(|e| e.to_string())?;
    fingerprint_file(path).map(Some).map_err(|e| e.to_string())
}
