//! `--collate`: each distinct output once, headed by the compact list of hosts that
//! produced it, as `dshbak -c` prints it.
//!
//! ```text
//! ----------------
//! 127.0.0.[2-40,42]
//! ----------------
//! the output, as it came
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::io::{self, Write};

use super::hosts::compact;

const RULE: &str = "----------------\n";

/// Groups hosts by identical output, in the order each output was first seen: `outputs`
/// holds each host and what identifies its output (`None`: it printed nothing, and is
/// left out, as dshbak has nothing to show for it). Each group is its hosts and the
/// index in `outputs` of the first of them.
pub fn groups<'a, K: Eq + Hash>(outputs: &[(&'a str, Option<K>)]) -> Vec<(Vec<&'a str>, usize)> {
    let mut index: HashMap<&K, usize> = HashMap::new();
    let mut groups: Vec<(Vec<&str>, usize)> = Vec::new();
    for (i, (host, key)) in outputs.iter().enumerate() {
        let Some(key) = key else {
            continue;
        };
        match index.get(key) {
            Some(&g) => groups[g].0.push(host),
            None => {
                index.insert(key, groups.len());
                groups.push((vec![host], i));
            }
        }
    }
    groups
}

/// Writes the groups: a header of hosts between rules, then the output, which
/// `output(i, out)` writes for the `i`th of `outputs` and answers whether it ended in a
/// newline; one is added where it did not.
///
/// # Errors
/// What `output` or writing `out` returns.
pub fn write(
    groups: &[(Vec<&str>, usize)],
    out: &mut dyn Write,
    mut output: impl FnMut(usize, &mut dyn Write) -> io::Result<bool>,
) -> io::Result<()> {
    for (hosts, first) in groups {
        out.write_all(RULE.as_bytes())?;
        out.write_all(compact(hosts).as_bytes())?;
        out.write_all(b"\n")?;
        out.write_all(RULE.as_bytes())?;
        if !output(*first, out)? {
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(outputs: &[(&str, &[u8])]) -> String {
        let keyed: Vec<(&str, Option<&[u8]>)> = outputs
            .iter()
            .map(|&(h, o)| (h, (!o.is_empty()).then_some(o)))
            .collect();
        let mut out = Vec::new();
        write(&groups(&keyed), &mut out, |i, w| {
            w.write_all(outputs[i].1)?;
            Ok(outputs[i].1.ends_with(b"\n"))
        })
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn identical_outputs_share_one_header() {
        let outputs: Vec<(&str, &[u8])> = vec![
            ("n3", b"same\n"),
            ("n1", b"same\n"),
            ("n9", b"other"),
            ("n2", b"same\n"),
            ("n4", b""),
        ];
        assert_eq!(
            render(&outputs),
            "----------------\nn[1-3]\n----------------\nsame\n\
             ----------------\nn9\n----------------\nother\n"
        );
    }

    #[test]
    fn nothing_to_show_is_empty() {
        assert!(render(&[("a", b"")]).is_empty());
    }
}
