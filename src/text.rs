//! Prose wrapped to the 80 columns of a terminal, for messages people read.

/// Widest line rcmd prints for people to read.
pub const COLUMNS: usize = 80;

/// `text` wrapped at `width` columns (counted in characters, not bytes), word by word:
/// the first line starts with `first`, the others with `indent` spaces. A word longer
/// than a line gets a line of its own.
pub fn wrap(text: &str, width: usize, first: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut lines = vec![first.to_string()];
    let mut empty = true;
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(format!("{pad}{word}"));
        } else {
            if !empty {
                line.push(' ');
            }
            line.push_str(word);
        }
        empty = false;
    }
    lines.join("\n")
}

/// A message for stderr: `prefix` (such as `rcmd: `) and `text`, wrapped at [`COLUMNS`],
/// the following lines indented under the text.
pub fn message(prefix: &str, text: &str) -> String {
    wrap(text, COLUMNS, prefix, prefix.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_stay_within_the_width_counted_in_characters() {
        let text = "粘包 sticky packets: a reply longer than the buffer runs into the next \
                    one, and the reader cannot tell where one ends";
        let w = wrap(text, 30, "rcmd: ", 6);
        for line in w.lines() {
            assert!(line.chars().count() <= 30, "{line:?}");
        }
        assert!(w.starts_with("rcmd: 粘包 sticky"), "{w}");
        assert!(w.lines().skip(1).all(|l| l.starts_with("      ")), "{w}");
        assert_eq!(
            w.split_whitespace().skip(1).collect::<Vec<_>>().join(" "),
            text
        );
    }
}

/// Why an I/O operation failed, in words: the operating system's reason without Rust's
/// `(os error N)` and without any path a wrapper added (a temporary file's random name).
pub fn io_reason(e: &std::io::Error) -> String {
    let mut code = e.raw_os_error();
    let mut inner: Option<&(dyn std::error::Error + 'static)> =
        e.get_ref().map(|r| r as &(dyn std::error::Error + 'static));
    while let (None, Some(err)) = (code, inner) {
        code = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error);
        inner = err.source();
    }
    let text = match code {
        Some(c) => std::io::Error::from_raw_os_error(c).to_string(),
        None => e.to_string(),
    };
    let text = text.split(" (os error ").next().unwrap_or_default();
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_lowercase().chain(chars).collect::<String>()
    })
}

#[cfg(test)]
mod io_reason_tests {
    use super::io_reason;

    #[test]
    fn os_errors_read_as_words() {
        let e = std::io::Error::from(rustix::io::Errno::CONNRESET);
        assert_eq!(io_reason(&e), "connection reset by peer");
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            std::io::Error::from(rustix::io::Errno::NOENT),
        );
        assert_eq!(io_reason(&wrapped), "no such file or directory");
    }
}
