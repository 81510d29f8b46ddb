//! `rcmd client`.

use clap::Args;

use super::token::TokenArgs;
use super::{init_logging, Failure, WireArgs};
use crate::client::{self, ClientConfig, Input, Output};
use crate::wire::Protocol;

/// Exit code for a connection, protocol or usage error, as ssh uses.
const CLIENT_FAILED: i32 = 255;

#[derive(Debug, Args)]
pub(super) struct ClientArgs {
    /// Server address: HOST:PORT, where HOST is a name, an IPv4 address or [IPv6]
    #[arg(value_name = "HOST:PORT")]
    addr: String,

    #[command(flatten)]
    wire: WireArgs,

    #[command(flatten)]
    token: TokenArgs,

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
    let wire = args.wire.wire();
    if args.token.given() && wire.protocol != Protocol::Framed {
        return Err(Failure::new(
            CLIENT_FAILED,
            format!(
                "the {} mode has no way to carry a token",
                wire.protocol.name()
            ),
        ));
    }
    let token = args
        .token
        .for_client(std::env::var("RCMD_TOKEN").ok(), wire.protocol)
        .map_err(|e| Failure::new(CLIENT_FAILED, e))?;
    let config = ClientConfig {
        wire,
        token,
        ..ClientConfig::new(wire.protocol)
    };
    let input = if args.command.is_empty() {
        Input::stdin(format!("{}> ", args.addr))
    } else {
        Input::one(command_line(&args.command).into_bytes())
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(CLIENT_FAILED, e))?;
    runtime
        .block_on(client::run(
            &args.addr,
            &config,
            input,
            &mut Output::terminal(),
        ))
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
