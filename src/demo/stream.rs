//! Who wrote which bytes of a byte stream, and which of them each read returned.
//!
//! The naive server writes each command's output into one stream, in order. Knowing how
//! long each output is (from running the command on its own), every byte's owner is known;
//! a read is a range of the stream, and its bytes may belong to several commands.

/// A stream made of the outputs of commands `0..n`, one after another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Output length of each command, in stream order.
    lens: Vec<usize>,
}

/// A run of bytes within one read that belong to one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub owner: usize,
    pub len: usize,
}

impl Stream {
    pub fn new(lens: Vec<usize>) -> Stream {
        Stream { lens }
    }

    /// Total bytes in the stream.
    pub fn len(&self) -> usize {
        self.lens.iter().sum()
    }

    /// Whether the stream holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where command `i`'s output starts and ends in the stream.
    pub fn span(&self, i: usize) -> std::ops::Range<usize> {
        let start: usize = self.lens[..i].iter().sum();
        start..start + self.lens[i]
    }

    /// The owners of bytes `start..start + len`, as runs in stream order.
    pub fn pieces(&self, start: usize, len: usize) -> Vec<Piece> {
        let end = start + len;
        (0..self.lens.len())
            .filter_map(|owner| {
                let span = self.span(owner);
                let lo = span.start.max(start);
                let hi = span.end.min(end);
                (hi > lo).then(|| Piece {
                    owner,
                    len: hi - lo,
                })
            })
            .collect()
    }

    /// How many of bytes `start..start + len`, taken as the reply to `command`, belong
    /// to another command.
    pub fn misattributed(&self, command: usize, start: usize, len: usize) -> usize {
        self.pieces(start, len)
            .iter()
            .filter(|p| p.owner != command)
            .map(|p| p.len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// seq 1 1000 (3893 bytes), echo hello (6), pwd (11), an error (58): read 1024 at a time.
    fn tutorial_stream() -> Stream {
        Stream::new(vec![3893, 6, 11, 58])
    }

    #[test]
    fn leftover_of_a_long_reply_becomes_the_next_reply() {
        let s = tutorial_stream();
        assert_eq!(
            s.pieces(0, 1024),
            vec![Piece {
                owner: 0,
                len: 1024
            }]
        );
        // The second read, taken as `echo hello`'s reply, is all seq output.
        assert_eq!(
            s.pieces(1024, 1024),
            vec![Piece {
                owner: 0,
                len: 1024
            }]
        );
        assert_eq!(s.misattributed(1, 1024, 1024), 1024);
    }

    #[test]
    fn one_read_spanning_several_replies_splits_by_owner() {
        let s = tutorial_stream();
        let pieces = s.pieces(3072, 3968 - 3072);
        assert_eq!(
            pieces,
            vec![
                Piece { owner: 0, len: 821 },
                Piece { owner: 1, len: 6 },
                Piece { owner: 2, len: 11 },
                Piece { owner: 3, len: 58 },
            ]
        );
        assert_eq!(s.misattributed(3, 3072, 896), 821 + 6 + 11);
    }

    #[test]
    fn a_read_inside_one_reply_has_one_owner() {
        let s = tutorial_stream();
        assert_eq!(s.pieces(3894, 3), vec![Piece { owner: 1, len: 3 }]);
        assert_eq!(s.misattributed(1, 3894, 3), 0);
        assert_eq!(s.pieces(s.len(), 0), vec![]);
    }

    #[test]
    fn spans_are_consecutive() {
        let s = tutorial_stream();
        assert_eq!(s.span(0), 0..3893);
        assert_eq!(s.span(1), 3893..3899);
        assert_eq!(s.span(3), 3910..3968);
        assert_eq!(s.len(), 3968);
    }
}
