//! Where each end's token comes from: `--token`, `--token-file` or `RCMD_TOKEN` when given,
//! else the same-user token in rcmd's configuration directory, which the server creates on
//! first start and clients of the same user read. Another user cannot read it, so by default
//! only the user who started the server can run commands on it.

use std::io::ErrorKind;
use std::path::PathBuf;

use clap::Args;

use crate::auth::{Token, TOKEN_IN_ARGV_WARNING};
use crate::config::ConfigDir;
use crate::wire::Protocol;

/// The token options, the same for both ends.
#[derive(Debug, Clone, Args)]
pub(super) struct TokenArgs {
    /// Token to authenticate with (framed mode) instead of the same-user token file.
    /// Visible to other users in `ps`: prefer --token-file or RCMD_TOKEN
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,

    /// File holding the token, readable by its owner only (a trailing newline is ignored)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// The token a server requires, and where it came from.
pub(super) enum ServerToken {
    /// `--token`, `--token-file` or `RCMD_TOKEN`.
    Given(Token),
    /// The same-user file; `created` when this start made it.
    SameUser {
        token: Token,
        path: PathBuf,
        created: bool,
    },
    /// No token: `--allow-unauthenticated`, or a mode that cannot carry one.
    None,
}

impl ServerToken {
    pub(super) fn token(&self) -> Option<&Token> {
        match self {
            ServerToken::Given(t) | ServerToken::SameUser { token: t, .. } => Some(t),
            ServerToken::None => None,
        }
    }
}

impl TokenArgs {
    /// Whether a token option was given on the command line.
    pub(super) fn given(&self) -> bool {
        self.token.is_some() || self.token_file.is_some()
    }

    /// The token given explicitly, in order of preference: `--token`, `--token-file`,
    /// `env` (the value `RCMD_TOKEN` had). Warns on stderr when it was on the command line.
    fn explicit(&self, env: Option<String>) -> Result<Option<Token>, String> {
        if self.token.is_some() {
            eprintln!("rcmd: {TOKEN_IN_ARGV_WARNING}");
        }
        Token::from_sources(self.token.as_deref(), self.token_file.as_deref(), env)
            .map_err(|e| e.to_string())
    }

    /// The server's token. Without an explicit one, framed mode uses (and on first start
    /// creates) the same-user file, unless `allow_unauthenticated`.
    pub(super) fn for_server(
        &self,
        env: Option<String>,
        protocol: Protocol,
        allow_unauthenticated: bool,
    ) -> Result<ServerToken, String> {
        if let Some(token) = self.explicit(env)? {
            return Ok(ServerToken::Given(token));
        }
        if allow_unauthenticated || protocol != Protocol::Framed {
            // A tutorial mode without --allow-unauthenticated is refused by check_exposure.
            return Ok(ServerToken::None);
        }
        let dir = ConfigDir::locate().map_err(|e| e.to_string())?;
        dir.create().map_err(|e| e.to_string())?;
        let path = dir.token_file();
        let (token, created) = Token::from_file_or_create(&path).map_err(|e| e.to_string())?;
        Ok(ServerToken::SameUser {
            token,
            path,
            created,
        })
    }

    /// The client's tokens: the explicit one (sent to any server), and else (framed mode)
    /// the same-user file if this user has one, which the client sends only to a server
    /// that proves it is this user's own (see `ClientConfig::same_user_token`).
    pub(super) fn for_client(
        &self,
        env: Option<String>,
        protocol: Protocol,
    ) -> Result<(Option<Token>, Option<Token>), String> {
        if let Some(token) = self.explicit(env)? {
            return Ok((Some(token), None));
        }
        if protocol != Protocol::Framed {
            return Ok((None, None));
        }
        Ok((None, Self::same_user()?))
    }

    /// A settings file's `TokenFile`, unless a token was given on the command line.
    pub(super) fn default_file(&mut self, file: Option<PathBuf>) {
        if !self.given() {
            self.token_file = file;
        }
    }

    /// Whether `token` is this user's own (the same-user file's), however it was given.
    pub(super) fn is_same_user(token: &Token) -> bool {
        matches!(Self::same_user(), Ok(Some(own)) if own.matches(token.as_bytes()))
    }

    /// The same-user token, if this user has one.
    fn same_user() -> Result<Option<Token>, String> {
        let Ok(dir) = ConfigDir::locate() else {
            return Ok(None);
        };
        if !dir.existing().map_err(|e| e.to_string())? {
            return Ok(None);
        }
        let path = dir.token_file();
        // Only a file that is not there means "no token": one we may not read is an error.
        if std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == ErrorKind::NotFound) {
            return Ok(None);
        }
        Token::from_file(&path).map(Some).map_err(|e| e.to_string())
    }
}
