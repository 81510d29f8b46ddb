//! Where a host named on the command line is, and what it is reached with: the per-host
//! settings file (`config` in rcmd's configuration directory) applied under the command
//! line, for one host and for each host of a `-H` list alike.

use super::Failure;
use crate::client::ClientConfig;
use crate::config::ConfigDir;
use crate::fanout::{hosts::Lookup, Clients, Target};
use crate::settings::{HostSettings, Settings};

/// The settings file; none when there is no configuration directory.
///
/// The directory is checked before the file is read: another user's directory is refused
/// for what it is, not for a file in it this user cannot read.
pub(super) fn settings() -> Result<Settings, Failure> {
    match ConfigDir::locate() {
        Ok(dir) if dir.existing().map_err(Failure::new)? => {
            Settings::load(&dir.settings_file()).map_err(Failure::new)
        }
        _ => Ok(Settings::default()),
    }
}

/// How a `-H` list is read: `@GROUP` from the hosts file, `HostName` and `Port` from the
/// settings file, and `port` (`-p`, `-P`) for entries that give none.
pub(super) fn lookup(port: Option<u16>) -> Result<Lookup, Failure> {
    Ok(Lookup {
        port,
        groups: ConfigDir::locate().ok().map(|d| d.path().join("hosts")),
        settings: settings()?,
    })
}

/// The settings of `host` other than where it is (`HostName` and `Port` are in its
/// [`Target`] already); `None` when the file gives it none, so it shares the command
/// line's.
pub(super) fn own_settings(settings: &Settings, host: &str) -> Option<HostSettings> {
    let own = HostSettings {
        host_name: None,
        port: None,
        ..settings.for_host(host)
    };
    (own != HostSettings::default()).then_some(own)
}

/// What each target is reached with: `all`, except for the targets the settings file
/// gives settings of their own, reached with what `configure` makes of those (once for
/// each distinct set, however many hosts share it).
pub(super) fn clients(
    targets: &[Target],
    settings: &Settings,
    all: ClientConfig,
    configure: &dyn Fn(&HostSettings) -> Result<ClientConfig, Failure>,
) -> Result<Clients, Failure> {
    let mut clients = Clients::one(all);
    let mut made: Vec<(HostSettings, ClientConfig)> = Vec::new();
    for target in targets {
        let Some(own) = own_settings(settings, &target.host) else {
            continue;
        };
        let config = match made.iter().find(|(s, _)| *s == own) {
            Some((_, config)) => config.clone(),
            None => {
                let config = configure(&own)?;
                made.push((own, config.clone()));
                config
            }
        };
        clients.set(target.clone(), config);
    }
    Ok(clients)
}
