//! How the demos draw: colour on a terminal, plain markers otherwise (or with `NO_COLOR`).

use std::io::IsTerminal;

use super::stages::Trace;

/// Text styling; every escape code the demos print comes from here.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

const COMMAND_COLORS: [u8; 6] = [36, 33, 35, 32, 34, 31];

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty
    /// (<https://no-color.org>).
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: std::io::stdout().is_terminal() && !no_color,
        }
    }

    /// No escape codes at all.
    #[cfg(test)]
    pub fn plain() -> Style {
        Style { color: false }
    }

    fn paint(&self, code: u8, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// `text` in command `i`'s colour.
    pub fn command(&self, i: usize, text: &str) -> String {
        self.paint(COMMAND_COLORS[i % COMMAND_COLORS.len()], text)
    }

    pub fn good(&self, text: &str) -> String {
        self.paint(32, text)
    }

    pub fn bad(&self, text: &str) -> String {
        self.paint(31, text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint(2, text)
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint(1, text)
    }

    /// The marker for command `i` (0-based): `#` and its number, coloured.
    pub fn marker(&self, i: usize) -> String {
        self.command(i, &format!("#{}", marker_char(i)))
    }

    /// Draws `trace`'s stream as a bar `width` columns wide: each column shows the number
    /// of the command its bytes belong to, and `|` marks where each read ended. Bytes no
    /// read returned are drawn dim after the last `|`. Every run gets at least one
    /// column so even a 6-byte reply shows.
    /// More than [`MARKED_READS`] reads (a tiny `--recv-size`) would not fit: the bar
    /// then marks only where reading ended.
    pub fn bar(&self, trace: &Trace, reads: &[(usize, usize)], width: usize) -> String {
        let read: Vec<&(usize, usize)> = reads.iter().filter(|r| r.1 > 0).collect();
        let whole;
        let reads = if read.len() > MARKED_READS {
            let end = read.last().map_or(0, |r| r.0 + r.1);
            whole = [(0, end)];
            &whole[..]
        } else {
            reads
        };
        let total = trace.len().max(1);
        let columns = |len: usize| ((len * width + total / 2) / total).max(1);
        let digit = |o: Option<usize>| o.map_or('·', marker_char);
        let mut bar = String::from("|");
        let mut end = 0;
        for &(start, len) in reads.iter().filter(|r| r.1 > 0) {
            for (owner, n) in trace.owners(start, len) {
                let o = owner.unwrap_or(0);
                bar.push_str(&self.command(o, &digit(owner).to_string().repeat(columns(n))));
            }
            bar.push('|');
            end = start + len;
        }
        for (owner, n) in trace.owners(end, trace.len() - end) {
            bar.push_str(&self.dim(&digit(owner).to_string().repeat(columns(n))));
        }
        bar
    }
}

/// Most reads a bar marks one by one.
pub const MARKED_READS: usize = 16;

fn marker_char(i: usize) -> char {
    char::from_digit((i as u32 + 1) % 36, 36).unwrap_or('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_style_has_no_escape_codes() {
        let st = Style::plain();
        for text in [
            st.good("ok"),
            st.bad("x"),
            st.marker(2),
            st.dim("d"),
            st.bold("b"),
        ] {
            assert!(!text.contains('\x1b'), "{text:?}");
        }
    }
}
