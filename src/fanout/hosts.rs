//! Host lists as pdsh writes them, and back: `web[1-3],db:9001,^FILE,@GROUP` to targets,
//! and a set of names to its compact form `127.0.0.[2-40,42]`.
//!
//! ```text
//! LIST   = ENTRY ("," ENTRY)*            commas inside [...] belong to the range
//! ENTRY  = "^" FILE                      each line of FILE is a LIST; '#' starts a comment
//!        | "@" GROUP                     a line "GROUP: LIST" in the hosts file
//!        | NAME [":" PORT]               NAME may hold ranges, PORT too
//! RANGE  = "[" SPAN ("," SPAN)* "]"      SPAN = N | N "-" N; "01-10" keeps the zero padding
//!        | "[" IPV6 "]"                  a bracket holding ':' is an IPv6 address, not a range
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::settings::Settings;

/// Most hosts one list may name, so a typo such as `node[1-10000000]` fails at once
/// instead of filling memory.
pub const MAX_HOSTS: usize = 100_000;

/// How deep `^FILE` and `@GROUP` may refer to further files and groups.
const MAX_DEPTH: usize = 8;

/// One host to run on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The host as written: a name, an IPv4 address or an IPv6 address (no brackets).
    pub host: String,
    pub port: u16,
    /// Where the settings file's `HostName` says `host` is, when it says.
    pub host_name: Option<String>,
}

impl Target {
    /// A host as written, on `port`, with no settings.
    pub fn new(host: impl Into<String>, port: u16) -> Target {
        Target {
            host: host.into(),
            port,
            host_name: None,
        }
    }

    /// `host:port` (the `HostName` in place of an alias), with an IPv6 address in
    /// brackets: what `connect` takes, and what `known_hosts` pins.
    pub fn addr(&self) -> String {
        let host = self.host_name.as_deref().unwrap_or(&self.host);
        format!("{}:{}", bracketed(host), self.port)
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// What is wrong with a host list.
#[derive(Debug)]
pub enum HostsError {
    /// An entry that does not parse; `why` says what to fix.
    Syntax { entry: String, why: String },
    /// The list names more than [`MAX_HOSTS`] hosts.
    TooMany { entry: String },
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `@GROUP` names a group the hosts file does not have (or there is no hosts file).
    Group { name: String, why: String },
    /// `^FILE` and `@GROUP` refer to each other too deeply (probably a loop).
    TooDeep { entry: String },
    /// Nothing left to run on.
    Empty,
}

impl fmt::Display for HostsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostsError::Syntax { entry, why } => write!(f, "host list entry {entry:?}: {why}"),
            HostsError::TooMany { entry } => write!(
                f,
                "host list entry {entry:?} names more than {MAX_HOSTS} hosts"
            ),
            HostsError::File { path, source } => {
                write!(f, "cannot read host file {}: {source}", path.display())
            }
            HostsError::Group { name, why } => write!(f, "host group @{name}: {why}"),
            HostsError::TooDeep { entry } => write!(
                f,
                "{entry:?}: files and groups nest more than {MAX_DEPTH} deep (a loop?)"
            ),
            HostsError::Empty => write!(f, "the host list names no host"),
        }
    }
}

impl std::error::Error for HostsError {}

fn syntax(entry: &str, why: impl Into<String>) -> HostsError {
    HostsError::Syntax {
        entry: entry.to_string(),
        why: why.into(),
    }
}

/// Where `@GROUP` is looked up, and where and on which port each host is.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// The port `-p` gave: for every host whose entry has none, over the settings file's.
    pub port: Option<u16>,
    /// The hosts file with lines `GROUP: LIST`; `None` when there is no config directory.
    pub groups: Option<PathBuf>,
    /// The per-host settings file, for `HostName` and `Port` (as `rcmd client ALIAS`).
    pub settings: Settings,
}

/// The targets `include` names, less those `exclude` names, in the order first written and
/// without repeats. An excluded host without a port excludes it on every port.
///
/// # Errors
/// A [`HostsError`] for a bad entry, an unreadable file, an unknown group, more than
/// [`MAX_HOSTS`] hosts, or an empty result.
pub fn targets(
    include: &str,
    exclude: Option<&str>,
    lookup: &Lookup,
) -> Result<Vec<Target>, HostsError> {
    let mut named = Vec::new();
    expand_list(include, lookup, 0, &mut named)?;
    let mut excluded = Vec::new();
    if let Some(exclude) = exclude {
        expand_list(exclude, lookup, 0, &mut excluded)?;
    }
    let any_port: HashSet<&str> = excluded
        .iter()
        .filter(|(_, p)| p.is_none())
        .map(|(h, _)| h.as_str())
        .collect();
    let exact: HashSet<(&str, u16)> = excluded
        .iter()
        .filter_map(|(h, p)| p.map(|p| (h.as_str(), p)))
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (host, port) in named {
        let settings = lookup.settings.for_host(&host);
        // As for one host: the entry's own port, then -p, then the settings file's.
        let port = port
            .or(lookup.port)
            .or(settings.port)
            .unwrap_or(crate::wire::DEFAULT_PORT);
        if any_port.contains(host.as_str()) || exact.contains(&(host.as_str(), port)) {
            continue;
        }
        let target = Target {
            host,
            port,
            host_name: settings.host_name,
        };
        if seen.insert(target.clone()) {
            out.push(target);
        }
    }
    if out.is_empty() {
        return Err(HostsError::Empty);
    }
    Ok(out)
}

/// Expands a list into `(host, port if written)`, appending to `out`.
fn expand_list(
    list: &str,
    lookup: &Lookup,
    depth: usize,
    out: &mut Vec<(String, Option<u16>)>,
) -> Result<(), HostsError> {
    for entry in split_entries(list)? {
        if depth > MAX_DEPTH {
            return Err(HostsError::TooDeep {
                entry: entry.to_string(),
            });
        }
        if let Some(file) = entry.strip_prefix('^') {
            let path = Path::new(file);
            let text = std::fs::read_to_string(path).map_err(|source| HostsError::File {
                path: path.to_path_buf(),
                source,
            })?;
            for line in text.lines() {
                expand_list(uncommented(line), lookup, depth + 1, out)?;
            }
        } else if let Some(group) = entry.strip_prefix('@') {
            let list = group_list(group, lookup)?;
            expand_list(&list, lookup, depth + 1, out)?;
        } else {
            for name in expand(entry)? {
                out.push(split_port(entry, &name)?);
            }
        }
        if out.len() > MAX_HOSTS {
            return Err(HostsError::TooMany {
                entry: entry.to_string(),
            });
        }
    }
    Ok(())
}

fn uncommented(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

/// The list of `group` in the hosts file.
fn group_list(group: &str, lookup: &Lookup) -> Result<String, HostsError> {
    let err = |why: String| HostsError::Group {
        name: group.to_string(),
        why,
    };
    let Some(path) = &lookup.groups else {
        return Err(err(
            "no config directory to find a hosts file in (set RCMD_HOME)".into(),
        ));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    for line in text.lines() {
        if let Some((name, list)) = uncommented(line).split_once(':') {
            if name.trim() == group {
                return Ok(list.trim().to_string());
            }
        }
    }
    Err(err(format!(
        "not in {} (lines there read GROUP: LIST)",
        path.display()
    )))
}

/// The groups the hosts file at `path` defines, in file order; none if it cannot be read
/// (for completion, which offers what it can and never fails).
pub fn group_names(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| uncommented(line).split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Splits a list at the commas outside brackets, dropping empty entries and spaces.
fn split_entries(list: &str) -> Result<Vec<&str>, HostsError> {
    let mut entries = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| syntax(list, "']' without '['"))?
            }
            ',' if depth == 0 => {
                entries.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(syntax(list, "'[' is never closed"));
    }
    entries.push(list[start..].trim());
    entries.retain(|e| !e.is_empty());
    Ok(entries)
}

/// The names one entry stands for: every range expanded, the first range varying slowest
/// (`r[1-2]n[1-2]` is r1n1, r1n2, r2n1, r2n2).
///
/// # Errors
/// A [`HostsError`] for a malformed range or more than [`MAX_HOSTS`] names.
pub fn expand(entry: &str) -> Result<Vec<String>, HostsError> {
    // The entry as pieces: literal text, or the choices of one range.
    let mut pieces: Vec<Vec<String>> = Vec::new();
    let mut rest = entry;
    let mut total = 1usize;
    while let Some(open) = rest.find('[') {
        pieces.push(vec![rest[..open].to_string()]);
        let close = rest[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or_else(|| syntax(entry, "'[' is never closed"))?;
        let inside = &rest[open + 1..close];
        let choices = if inside.contains(':') {
            // An IPv6 address in brackets, kept as written.
            vec![rest[open..=close].to_string()]
        } else {
            range(entry, inside)?
        };
        total = total
            .checked_mul(choices.len())
            .filter(|&t| t <= MAX_HOSTS)
            .ok_or_else(|| HostsError::TooMany {
                entry: entry.to_string(),
            })?;
        pieces.push(choices);
        rest = &rest[close + 1..];
    }
    if rest.contains(']') {
        return Err(syntax(entry, "']' without '['"));
    }
    pieces.push(vec![rest.to_string()]);
    let mut names = vec![String::new()];
    for piece in pieces {
        names = names
            .iter()
            .flat_map(|n| piece.iter().map(move |p| format!("{n}{p}")))
            .collect();
    }
    Ok(names)
}

/// The numbers inside one pair of brackets, as text, padded as written.
fn range(entry: &str, inside: &str) -> Result<Vec<String>, HostsError> {
    if inside.contains('[') {
        return Err(syntax(entry, "ranges cannot nest"));
    }
    let mut out = Vec::new();
    for span in inside.split(',') {
        let span = span.trim();
        let (lo, hi) = span.split_once('-').unwrap_or((span, span));
        let number = |s: &str| -> Result<u64, HostsError> {
            if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax(
                    entry,
                    format!("{span:?} is not a number or a range N-M"),
                ));
            }
            Ok(s.parse().expect("18 digits fit in u64"))
        };
        let (a, b) = (number(lo)?, number(hi)?);
        if a > b {
            return Err(syntax(
                entry,
                format!("range {span:?} runs backwards; write {hi}-{lo}"),
            ));
        }
        if b - a >= MAX_HOSTS as u64 || out.len() + (b - a) as usize >= MAX_HOSTS {
            return Err(HostsError::TooMany {
                entry: entry.to_string(),
            });
        }
        // pdsh's rule: a leading zero pads every number to the width of the first.
        let width = if lo.len() > 1 && lo.starts_with('0') {
            lo.len()
        } else {
            0
        };
        out.extend((a..=b).map(|n| format!("{n:0width$}")));
    }
    Ok(out)
}

/// Splits `name` (already expanded) into host and port, checking both.
fn split_port(entry: &str, name: &str) -> Result<(String, Option<u16>), HostsError> {
    let (host, port) = if let Some(v6) = name.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| syntax(entry, "'[' is never closed"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(syntax(entry, "only ':PORT' may follow ']'")),
            },
        }
    } else {
        match name.rsplit_once(':') {
            // Two or more colons without brackets: a bare IPv6 address.
            Some((host, _)) if host.contains(':') => (name, None),
            Some((host, port)) => (host, Some(port)),
            None => (name, None),
        }
    };
    if host.is_empty() {
        return Err(syntax(entry, "a host name is empty"));
    }
    if let Some(bad) = host
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "/[]@^".contains(*c))
    {
        return Err(syntax(entry, format!("{bad:?} cannot be in a host name")));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| syntax(entry, format!("{p:?} is not a port (1-65535)")))
        })
        .transpose()?;
    Ok((host.to_string(), port))
}

/// What each target is called in output and file names: the host as written, with its
/// port only where two targets share the host.
pub fn display_names(targets: &[Target]) -> Vec<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for t in targets {
        *count.entry(&t.host).or_default() += 1;
    }
    targets
        .iter()
        .map(|t| {
            if count[t.host.as_str()] > 1 {
                format!("{}:{}", bracketed(&t.host), t.port)
            } else {
                t.host.clone()
            }
        })
        .collect()
}

/// Longest digit run taken as a number; longer runs are treated as text.
const MAX_DIGITS: usize = 18;

/// A name cut into text and numbers: `text[0] num[0] text[1] ... text[n]`.
struct Cut<'a> {
    text: Vec<&'a str>,
    num: Vec<&'a str>,
}

fn cut(name: &str) -> Cut<'_> {
    let mut text = Vec::new();
    let mut num = Vec::new();
    let bytes = name.as_bytes();
    let (mut i, mut start) = (0, 0);
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let end = bytes[i..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(bytes.len(), |n| i + n);
            if end - i <= MAX_DIGITS {
                text.push(&name[start..i]);
                num.push(&name[i..end]);
                start = end;
            }
            i = end;
        } else {
            i += 1;
        }
    }
    text.push(&name[start..]);
    Cut { text, num }
}

/// The shortest pdsh list for `names` that [`expand`] turns back into the same set:
/// `127.0.0.2, 127.0.0.3, 127.0.0.4, 127.0.0.7` → `127.0.0.[2-4,7]`. Names are folded on
/// the number that varies (the last one where several do); zero padding is kept.
pub fn compact<S: AsRef<str>>(names: &[S]) -> String {
    // Names with the same text between their numbers, and the same other numbers, fold
    // into one bracket.
    type Key<'a> = (Vec<&'a str>, usize, Vec<&'a str>);
    let mut shapes: BTreeMap<Vec<&str>, Vec<Vec<&str>>> = BTreeMap::new();
    for name in names {
        let c = cut(name.as_ref());
        shapes.entry(c.text).or_default().push(c.num);
    }
    let mut folds: BTreeMap<Key, Vec<&str>> = BTreeMap::new();
    for (text, nums) in &shapes {
        let runs = text.len() - 1;
        if runs == 0 {
            folds.insert((text.clone(), 0, Vec::new()), Vec::new());
            continue;
        }
        let varies = |i: usize| nums.iter().any(|n| n[i] != nums[0][i]);
        let at = (0..runs).rev().find(|&i| varies(i)).unwrap_or(runs - 1);
        for n in nums {
            let mut others = n.clone();
            let folded = others.remove(at);
            folds
                .entry((text.clone(), at, others))
                .or_default()
                .push(folded);
        }
    }
    let mut out = Vec::new();
    for ((text, at, others), numbers) in folds {
        let (before, after) = render_around(&text, at, &others);
        if numbers.is_empty() {
            out.push(before);
            continue;
        }
        for spans in fold_numbers(&numbers) {
            if spans.contains(['-', ',']) {
                out.push(format!("{before}[{spans}]{after}"));
            } else {
                out.push(format!("{before}{spans}{after}"));
            }
        }
    }
    out.join(",")
}

/// The text of a cut name before and after number `at`, with the other numbers in place.
fn render_around(text: &[&str], at: usize, others: &[&str]) -> (String, String) {
    let mut before = String::new();
    let mut after = String::new();
    let mut others = others.iter();
    for (i, t) in text.iter().enumerate() {
        let s = if i <= at { &mut before } else { &mut after };
        s.push_str(t);
        if i + 1 < text.len() && i != at {
            let s = if i < at { &mut before } else { &mut after };
            s.push_str(others.next().expect("one number between texts"));
        }
    }
    (before, after)
}

/// Numbers (as written) folded into range lists, one list per width class: numbers padded
/// to the same width share a list; unpadded numbers share another.
fn fold_numbers(numbers: &[&str]) -> Vec<String> {
    let padded = |n: &str| n.len() > 1 && n.starts_with('0');
    let widths: HashSet<usize> = numbers
        .iter()
        .filter(|n| padded(n))
        .map(|n| n.len())
        .collect();
    // Width 0: unpadded. A number without a leading zero joins a padded class of its own
    // width, as `node[01-10]` holds both `node01` and `node10`.
    let mut classes: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for n in numbers {
        let width = if padded(n) || widths.contains(&n.len()) {
            n.len()
        } else {
            0
        };
        classes
            .entry(width)
            .or_default()
            .push(n.parse().expect("digit runs are short enough"));
    }
    classes
        .into_iter()
        .map(|(width, mut ns)| {
            ns.sort_unstable();
            ns.dedup();
            let mut spans = Vec::new();
            let mut i = 0;
            while i < ns.len() {
                let mut j = i;
                while j + 1 < ns.len() && ns[j + 1] == ns[j] + 1 {
                    j += 1;
                }
                spans.push(if i == j {
                    format!("{:0width$}", ns[i])
                } else {
                    format!("{:0width$}-{:0width$}", ns[i], ns[j])
                });
                i = j + 1;
            }
            spans.join(",")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entry: &str) -> Vec<String> {
        expand(entry).unwrap()
    }

    fn lookup() -> Lookup {
        Lookup::default()
    }

    fn hosts(list: &str, exclude: Option<&str>) -> Vec<String> {
        targets(list, exclude, &lookup())
            .unwrap()
            .iter()
            .map(Target::addr)
            .collect()
    }

    #[test]
    fn ranges_expand_in_order() {
        assert_eq!(names("web[1-3]"), ["web1", "web2", "web3"]);
        assert_eq!(names("plain"), ["plain"]);
        assert_eq!(names("n[3,1,2]"), ["n3", "n1", "n2"]);
        assert_eq!(
            names("r[1-2]-n[1-2].lan"),
            ["r1-n1.lan", "r1-n2.lan", "r2-n1.lan", "r2-n2.lan"]
        );
        assert_eq!(names("127.0.0.[2-51]").len(), 50);
        assert_eq!(names("127.0.0.[2-51]")[49], "127.0.0.51");
    }

    #[test]
    fn zero_padding_is_kept() {
        let n = names("node[01-10,15]");
        assert_eq!(n.first().unwrap(), "node01");
        assert_eq!(n[8], "node09");
        assert_eq!(n[9], "node10");
        assert_eq!(n.last().unwrap(), "node15");
        assert_eq!(names("n[008-010]"), ["n008", "n009", "n010"]);
        assert_eq!(names("n[0-1]"), ["n0", "n1"], "a lone 0 is not padding");
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        let err = |e: &str| expand(e).unwrap_err().to_string();
        assert!(
            err("node[3-1]").contains("runs backwards"),
            "{}",
            err("node[3-1]")
        );
        assert!(err("node[1-3").contains("never closed"));
        assert!(err("node1-3]").contains("without '['"));
        assert!(err("node[]").contains("not a number"));
        assert!(err("node[a-b]").contains("not a number"));
        assert!(err("node[1-]").contains("not a number"));
        assert!(err("node[1-99999999999999999999]").contains("not a number"));
        assert!(targets("a,b[1-2", None, &lookup())
            .unwrap_err()
            .to_string()
            .contains("never closed"));
    }

    #[test]
    fn huge_lists_are_refused_before_they_fill_memory() {
        let err = expand("n[1-100001]").unwrap_err();
        assert!(matches!(err, HostsError::TooMany { .. }), "{err}");
        assert!(err.to_string().contains("more than 100000 hosts"));
        assert!(matches!(
            expand("a[1-1000]b[1-1000]").unwrap_err(),
            HostsError::TooMany { .. }
        ));
        assert!(matches!(
            expand("n[0-18446744073709551]").unwrap_err(),
            HostsError::TooMany { .. }
        ));
        assert_eq!(expand("n[1-100000]").unwrap().len(), MAX_HOSTS);
        let err = targets("a[1-60000],b[1-60000]", None, &lookup()).unwrap_err();
        assert!(matches!(err, HostsError::TooMany { .. }), "{err}");
    }

    #[test]
    fn ports_default_and_per_host() {
        assert_eq!(
            hosts("a,b:22,[::1]:7,[::1],::1,c[1-2]:[80-81]", None),
            [
                "a:9000",
                "b:22",
                "[::1]:7",
                "[::1]:9000",
                "c1:80",
                "c1:81",
                "c2:80",
                "c2:81"
            ]
        );
        let err = |l: &str| targets(l, None, &lookup()).unwrap_err().to_string();
        assert!(err("a:0").contains("not a port"));
        assert!(err("a:70000").contains("not a port"));
        assert!(err("a:x").contains("not a port"));
        assert!(err(":80").contains("empty"));
        assert!(err("a/b").contains("cannot be in a host name"));
    }

    #[test]
    fn settings_give_aliases_their_address_and_port_under_the_list_and_p() {
        let settings = Settings::parse(
            "Host web\n HostName 127.0.0.5\n Port 7001\nHost db*\n Port 7002\n",
            Path::new("config"),
        )
        .unwrap();
        let lookup = Lookup {
            settings,
            ..Lookup::default()
        };
        let got = targets("web,db1,web:22,other", None, &lookup).unwrap();
        let addrs: Vec<String> = got.iter().map(Target::addr).collect();
        assert_eq!(
            addrs,
            ["127.0.0.5:7001", "db1:7002", "127.0.0.5:22", "other:9000"]
        );
        // Shown as written, not as the address it stands for.
        assert_eq!(display_names(&got), ["web:7001", "db1", "web:22", "other"]);
        let with_p = Lookup {
            port: Some(5),
            ..lookup
        };
        let got = targets("web", None, &with_p).unwrap();
        assert_eq!(got[0].addr(), "127.0.0.5:5", "-p overrides the file's Port");
    }

    #[test]
    fn repeats_are_dropped_and_exclusions_apply() {
        assert_eq!(hosts("a,b,a,a:9000", None), ["a:9000", "b:9000"]);
        assert_eq!(
            hosts("n[1-5],n1:22", Some("n[2-3]")),
            ["n1:9000", "n4:9000", "n5:9000", "n1:22"]
        );
        assert_eq!(
            hosts("n1,n1:22", Some("n1:22")),
            ["n1:9000"],
            "an excluded port excludes only that port"
        );
        assert!(matches!(
            targets("a", Some("a"), &lookup()).unwrap_err(),
            HostsError::Empty
        ));
    }

    #[test]
    fn files_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("list");
        std::fs::write(&file, "# rack one\nn[1-2]\n\nn3 # spare\n@db\n").unwrap();
        let groups = dir.path().join("hosts");
        std::fs::write(&groups, "db: db[01-02]:5432\nloop: @loop\n").unwrap();
        let lookup = Lookup {
            port: Some(1),
            groups: Some(groups),
            ..Lookup::default()
        };
        let got: Vec<String> = targets(&format!("^{},x", file.display()), None, &lookup)
            .unwrap()
            .iter()
            .map(Target::addr)
            .collect();
        assert_eq!(
            got,
            ["n1:1", "n2:1", "n3:1", "db01:5432", "db02:5432", "x:1"]
        );
        let err = |l: &str| targets(l, None, &lookup).unwrap_err().to_string();
        assert!(err("@nope").contains("@nope: not in"), "{}", err("@nope"));
        assert!(err("@loop").contains("nest"), "{}", err("@loop"));
        assert!(err("^/no/such/file").contains("cannot read host file"));
        let nowhere = Lookup::default();
        assert!(targets("@db", None, &nowhere)
            .unwrap_err()
            .to_string()
            .contains("RCMD_HOME"));
    }

    #[test]
    fn compact_folds_ranges() {
        let ips: Vec<String> = (2..=40)
            .chain([42])
            .map(|i| format!("127.0.0.{i}"))
            .collect();
        assert_eq!(compact(&ips), "127.0.0.[2-40,42]");
        assert_eq!(compact(&["b", "a", "a"]), "a,b");
        assert_eq!(compact(&["web3"]), "web3");
        assert_eq!(compact(&["web3", "web1", "web2"]), "web[1-3]");
        assert_eq!(compact(&["h:9001", "h:9000"]), "h:[9000-9001]");
        assert_eq!(
            compact(&["r1n1", "r1n2", "r2n1", "r2n2"]),
            "r1n[1-2],r2n[1-2]"
        );
        assert_eq!(compact(&["r1n5", "r2n5", "r3n5"]), "r[1-3]n5");
        assert_eq!(compact::<&str>(&[]), "");
    }

    #[test]
    fn compact_keeps_padding() {
        assert_eq!(compact(&names("node[01-10,15]")), "node[01-10,15]");
        assert_eq!(compact(&names("node[1-10]")), "node[1-10]");
        assert_eq!(compact(&["n01", "n1", "n10"]), "n1,n[01,10]");
    }

    #[test]
    fn compact_round_trips() {
        for list in [
            "127.0.0.[2-40,42]",
            "node[01-10,15]",
            "node[001-003,010-020]",
            "a,b,web[1-3,7,9-12]",
            "r1n[1-2],r2n[1-2]",
            "x[0-3]y",
            "[::1]:[9000-9002]",
            "n[98-102]",
            "n[08-12]",
        ] {
            let expanded: Vec<String> = split_entries(list)
                .unwrap()
                .into_iter()
                .flat_map(|e| expand(e).unwrap())
                .collect();
            let compacted = compact(&expanded);
            let mut again: Vec<String> = split_entries(&compacted)
                .unwrap()
                .into_iter()
                .flat_map(|e| expand(e).unwrap())
                .collect();
            let mut expanded = expanded;
            expanded.sort();
            again.sort();
            assert_eq!(expanded, again, "{list} compacted to {compacted}");
        }
    }

    #[test]
    fn display_names_show_ports_only_when_needed() {
        let t = |h: &str, p| Target::new(h, p);
        assert_eq!(
            display_names(&[t("a", 1), t("b", 2), t("a", 3), t("::1", 4)]),
            ["a:1", "b", "a:3", "::1"]
        );
    }
}
