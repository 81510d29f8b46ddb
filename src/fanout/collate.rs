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

use super::hosts::compact;

const RULE: &str = "----------------\n";

/// Groups hosts by identical output, in the order each output was first seen. Hosts with
/// no output are left out, as dshbak has nothing to show for them.
pub fn groups<'a>(outputs: &[(&'a str, &'a [u8])]) -> Vec<(Vec<&'a str>, &'a [u8])> {
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let mut groups: Vec<(Vec<&str>, &[u8])> = Vec::new();
    for &(host, output) in outputs {
        if output.is_empty() {
            continue;
        }
        match index.get(output) {
            Some(&i) => groups[i].0.push(host),
            None => {
                index.insert(output, groups.len());
                groups.push((vec![host], output));
            }
        }
    }
    groups
}

/// The groups as text: a header of hosts between rules, then the output, ending in a
/// newline even where the output did not.
pub fn render(groups: &[(Vec<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (hosts, output) in groups {
        out.extend_from_slice(RULE.as_bytes());
        out.extend_from_slice(compact(hosts).as_bytes());
        out.push(b'\n');
        out.extend_from_slice(RULE.as_bytes());
        out.extend_from_slice(output);
        if !output.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_outputs_share_one_header() {
        let outputs: Vec<(&str, &[u8])> = vec![
            ("n3", b"same\n"),
            ("n1", b"same\n"),
            ("n9", b"other"),
            ("n2", b"same\n"),
            ("n4", b""),
        ];
        let g = groups(&outputs);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0, ["n3", "n1", "n2"]);
        assert_eq!(
            String::from_utf8(render(&g)).unwrap(),
            "----------------\nn[1-3]\n----------------\nsame\n\
             ----------------\nn9\n----------------\nother\n"
        );
    }

    #[test]
    fn nothing_to_show_is_empty() {
        assert!(render(&groups(&[("a", b"")])).is_empty());
    }
}
