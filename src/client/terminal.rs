//! The local terminal during a remote terminal session (`-t`): raw mode while it lasts,
//! restored on every way out, and its size for the server.

use std::sync::Mutex;

/// The settings to restore, kept where a panic hook can find them too.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Raw mode on standard input until dropped (or until [`restore`] is called).
pub struct RawMode(());

impl RawMode {
    /// Puts the terminal on stdin into raw mode: every key goes to the remote side as
    /// typed, Ctrl-C included, and nothing is echoed locally. `None` when stdin is not a
    /// terminal.
    pub fn enter() -> Option<RawMode> {
        // SAFETY: tcgetattr/tcsetattr read and write a termios we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
            install_panic_hook();
            let mut raw = t;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(0, libc::TCSADRAIN, &raw) != 0 {
                return None;
            }
        }
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
        // SAFETY: writing back the settings read earlier.
        unsafe {
            libc::tcsetattr(0, libc::TCSADRAIN, &t);
        }
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
    for fd in [1, 0, 2] {
        // SAFETY: TIOCGWINSZ writes a winsize into the local given.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 {
                return Some((ws.ws_row, ws.ws_col));
            }
        }
    }
    None
}
