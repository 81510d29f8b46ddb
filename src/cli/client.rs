//! `rcmd client`.

use std::path::PathBuf;

use clap::Args;

use super::fanout::{self, FanoutArgs};
use super::{init_logging, Failure, WireArgs};
use crate::auth::Token;
use crate::client::{self, ClientConfig, Input, Output};
use crate::wire::Protocol;

/// Exit code for a connection, protocol or usage error, as ssh uses.
const CLIENT_FAILED: i32 = 255;

#[derive(Debug, Args)]
pub(super) struct ClientArgs {
    /// Server address: HOST:PORT, where HOST is a name, an IPv4 address or [IPv6]
    #[arg(value_name = "HOST:PORT", required_unless_present = "hosts")]
    addr: Option<String>,

    #[command(flatten)]
    fanout: FanoutArgs,

    #[command(flatten)]
    wire: WireArgs,

    /// Token the server requires (framed mode). Visible to other users in `ps`:
    /// prefer --token-file or RCMD_TOKEN
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,

    /// File holding the token (a trailing newline is ignored)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Command to run remotely; without one, each line of standard input is a command.
    /// Several words are quoted so they arrive as typed; a single word is sent as the
    /// command line itself, so `'ls | wc -l'` runs a pipeline, as with ssh
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

pub(super) fn run(args: ClientArgs) -> Result<i32, Failure> {
    init_logging("rcmd=warn");
    let (addr, command) = fanout::positionals(&args.fanout, args.addr, args.command)?;
    let wire = args.wire.wire();
    let explicit_token = args.token.is_some() || args.token_file.is_some();
    if explicit_token && wire.protocol != Protocol::Framed {
        return Err(Failure::new(
            CLIENT_FAILED,
            format!(
                "the {} mode has no way to carry a token",
                wire.protocol.name()
            ),
        ));
    }
    let token = Token::from_sources(
        args.token.as_deref(),
        args.token_file.as_deref(),
        std::env::var("RCMD_TOKEN").ok(),
    )
    .map_err(|e| Failure::new(CLIENT_FAILED, e))?;
    let config = ClientConfig {
        wire,
        token,
        ..ClientConfig::new(wire.protocol)
    };
    if let Some(list) = &args.fanout.hosts {
        return fanout::run(&args.fanout, list, &command_line(&command), &config);
    }
    let addr = addr.expect("clap requires HOST:PORT without -H");
    let input = if command.is_empty() {
        Input::stdin(format!("{addr}> "))
    } else {
        Input::one(command_line(&command).into_bytes())
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(CLIENT_FAILED, e))?;
    runtime
        .block_on(client::run(&addr, &config, input, &mut Output::terminal()))
        .map_err(|e| Failure::new(CLIENT_FAILED, e))
}

/// The command line for the words after `HOST:PORT`. Several words are each quoted, so
/// `printf '%s|' 'a b' c` arrives as typed; a single word is already a command line
/// (`'seq 10 | wc -l'`), as ssh users write it.
fn command_line(words: &[String]) -> String {
    match words {
        [line] => line.clone(),
        words => shell_words::join(words),
    }
}

#[cfg(test)]
mod tests {
    use super::command_line;

    #[test]
    fn several_words_are_quoted_one_is_a_command_line() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&words(&["printf", "%s|", "a b", "c"])),
            "printf '%s|' 'a b' c"
        );
        assert_eq!(command_line(&words(&["seq 10 | wc -l"])), "seq 10 | wc -l");
    }
}
