//! The local terminal during a remote terminal session (`-t`): raw mode while it lasts,
//! restored on every way out, and its size for the server.

use std::sync::Mutex;

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

/// The settings to restore, kept where a panic hook can find them too.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Raw mode on standard input until dropped (or until [`restore`] is called).
pub struct RawMode(());

impl RawMode {
    /// Puts the terminal on stdin into raw mode: every key goes to the remote side as
    /// typed, Ctrl-C included, and nothing is echoed locally. `None` when stdin is not a
    /// terminal.
    pub fn enter() -> Option<RawMode> {
        let saved = tcgetattr(std::io::stdin()).ok()?;
        let mut raw = saved.clone();
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        install_panic_hook();
        raw.make_raw();
        tcsetattr(std::io::stdin(), OptionalActions::Drain, &raw).ok()?;
        Some(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as it was before [`RawMode::enter`], if it was changed.
pub fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = saved {
        // On the way out: a terminal that is gone needs no restoring.
        let _gone = tcsetattr(std::io::stdin(), OptionalActions::Drain, &t);
    }
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// The size of the terminal on stdout (or stdin), as rows and columns.
pub fn window_size() -> Option<(u16, u16)> {
    use std::os::fd::AsFd;
    let (out, input, err) = (std::io::stdout(), std::io::stdin(), std::io::stderr());
    let size = [out.as_fd(), input.as_fd(), err.as_fd()]
        .into_iter()
        .filter_map(|fd| tcgetwinsize(fd).ok())
        .find(|ws| ws.ws_row > 0)
        .map(|ws| (ws.ws_row, ws.ws_col));
    size
}
