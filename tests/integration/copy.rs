//! `rcmd cp`: trees both ways byte for byte, metadata with -p, sparse files, cut transfers
//! and their resumption, hostile names from a peer, and twenty hosts at once.

use crate::common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{rcmd, start_server, start_servers_on_one_port, wait_until, RcmdHome, Run};
use futures_util::{SinkExt, StreamExt};
use rcmd::server::ServerConfig;
use rcmd::wire::message::{ClientMessage, Hello, ServerCodec, ServerMessage};
use rcmd::wire::transfer::{Entry, Kind, Transfer};
use rcmd::wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite};

/// A plaintext server in this process whose commands and copies start in `workdir`.
async fn server_in(workdir: &Path) -> std::net::SocketAddr {
    start_server(ServerConfig {
        workdir: Some(workdir.to_path_buf()),
        ..ServerConfig::new(Protocol::Framed)
    })
    .await
}

/// `rcmd cp --plaintext -P PORT ARGS...`.
async fn cp(port: u16, args: &[&OsStr]) -> Run {
    let port = port.to_string();
    let mut all: Vec<&OsStr> = vec!["cp".as_ref(), "--plaintext".as_ref(), "-P".as_ref()];
    all.push(port.as_ref());
    all.extend_from_slice(args);
    let strs: Vec<String> = all
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Names that are not UTF-8 go through as bytes: run the binary with OsStr args.
    run_os(&all, &strs.join(" ")).await
}

async fn run_os(args: &[&OsStr], shown: &str) -> Run {
    let out = tokio::time::timeout(
        common::PROCESS_DEADLINE,
        common::rcmd_command()
            .args(args)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("rcmd cp did not finish")
    .unwrap();
    Run {
        command: format!("rcmd {shown}"),
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A tree with what copies get wrong: empty files and directories, odd names, a link,
/// unusual modes and old times.
fn make_tree(root: &Path) {
    let d = root.join("tree");
    std::fs::create_dir_all(d.join("empty dir")).unwrap();
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("zero"), b"").unwrap();
    std::fs::write(d.join("with space"), b"spaces\n").unwrap();
    std::fs::write(d.join("new\nline"), b"newline\n").unwrap();
    std::fs::write(d.join(OsStr::from_bytes(b"bytes\xff\xfe")), b"\x00\xff").unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(d.join("sub/large"), &data).unwrap();
    std::os::unix::fs::symlink("../with space", d.join("sub/link")).unwrap();
    std::fs::set_permissions(d.join("with space"), std::fs::Permissions::from_mode(0o751)).unwrap();
    std::fs::set_permissions(d.join("sub"), std::fs::Permissions::from_mode(0o710)).unwrap();
    for p in ["zero", "with space", "sub/large", "sub", "."] {
        let t = std::fs::FileTimes::new()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000));
        std::fs::File::open(d.join(p))
            .unwrap()
            .set_times(t)
            .unwrap();
    }
}

/// Every path under `root` with its kind, mode, mtime and content (or link target).
fn describe(root: &Path) -> Vec<(PathBuf, u32, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let content = if m.file_type().is_symlink() {
            std::fs::read_link(&p).unwrap().into_os_string().into_vec()
        } else if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            Vec::new()
        };
        // A link's own mode and times are not copied (Linux cannot set its mode).
        let (mode, mtime) = if m.file_type().is_symlink() {
            (0, 0)
        } else {
            (m.mode(), if m.is_dir() { 0 } else { m.mtime() })
        };
        out.push((rel, mode, mtime, content));
    }
    out.sort();
    out
}

use std::os::unix::ffi::OsStringExt;

#[tokio::test]
async fn a_tree_goes_up_and_comes_back_the_same_with_p() {
    let local = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    make_tree(local.path());
    let addr = server_in(remote.path()).await;
    let src = local.path().join("tree");
    cp(
        addr.port(),
        &[os("-r"), os("-p"), src.as_os_str(), os("127.0.0.1:up")],
    )
    .await
    .expect_code(0);
    assert_eq!(describe(&src), describe(&remote.path().join("up")));
    let back = local.path().join("back");
    cp(
        addr.port(),
        &[os("-r"), os("-p"), os("127.0.0.1:up"), back.as_os_str()],
    )
    .await
    .expect_code(0);
    assert_eq!(describe(&src), describe(&back));
    // No temporary file is left anywhere.
    let leftovers = describe(remote.path())
        .into_iter()
        .filter(|(p, ..)| p.to_string_lossy().contains(".rcmd-"))
        .count();
    assert_eq!(leftovers, 0);
}

#[tokio::test]
async fn without_p_modes_follow_the_umask_and_top_level_links_are_followed() {
    let local = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let f = local.path().join("f");
    std::fs::write(&f, b"data").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(&f, local.path().join("l")).unwrap();
    let addr = server_in(remote.path()).await;
    let l = local.path().join("l");
    cp(addr.port(), &[l.as_os_str(), os("127.0.0.1:")])
        .await
        .expect_code(0);
    let got = std::fs::symlink_metadata(remote.path().join("l")).unwrap();
    assert!(got.is_file(), "a named link is followed, as scp does");
    let umask = rcmd::test_support::umask();
    assert_eq!(got.mode() & 0o777, 0o777 & !umask);
}

#[tokio::test]
async fn a_sparse_gigabyte_stays_sparse_and_hashes_the_same_both_ways() {
    let local = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let big = local.path().join("big");
    {
        let mut f = std::fs::File::create(&big).unwrap();
        use std::io::{Seek, Write};
        f.write_all(b"head").unwrap();
        f.seek(std::io::SeekFrom::Start(512 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.set_len(1 << 30).unwrap();
    }
    let addr = server_in(remote.path()).await;
    cp(addr.port(), &[big.as_os_str(), os("127.0.0.1:big")])
        .await
        .expect_code(0);
    let back = local.path().join("back");
    cp(addr.port(), &[os("127.0.0.1:big"), back.as_os_str()])
        .await
        .expect_code(0);
    for p in [remote.path().join("big"), back] {
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.len(), 1 << 30);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "{} is not sparse: {} blocks",
            p.display(),
            m.blocks()
        );
        assert_same_bytes(&p, &big);
    }
}

/// Panics at the first byte where the two files differ, or if their lengths do. Only
/// where either file has data are bytes read and compared: elsewhere both are holes,
/// which read as zeros, so this is as strict as reading both whole. Reading a gigabyte of
/// holes took seconds per file (the kernel zeroes a page-cache page for every 4 KiB of it)
/// to compare zeros with zeros. Where a filesystem cannot tell holes from data, all of both
/// files counts as data and is compared.
fn assert_same_bytes(a: &Path, b: &Path) {
    use std::os::unix::fs::FileExt;
    let (fa, fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let len = fa.metadata().unwrap().len();
    assert_eq!(
        fb.metadata().unwrap().len(),
        len,
        "{} and {} differ in length",
        b.display(),
        a.display()
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut pos = 0u64;
    while pos < len {
        // The next byte where either file has data; before it, both are holes.
        let from = next_data(&fa, pos, len).min(next_data(&fb, pos, len));
        // Where the data runs there end in both files (at `from` for one in a hole).
        let to = next_hole(&fa, from, len).max(next_hole(&fb, from, len));
        let mut at = from;
        while at < to {
            let n = (to - at).min(ba.len() as u64) as usize;
            fa.read_exact_at(&mut ba[..n], at).unwrap();
            fb.read_exact_at(&mut bb[..n], at).unwrap();
            if ba[..n] != bb[..n] {
                let i = ba[..n]
                    .iter()
                    .zip(&bb[..n])
                    .position(|(x, y)| x != y)
                    .unwrap();
                panic!(
                    "{} and {} differ at byte {}",
                    a.display(),
                    b.display(),
                    at + i as u64
                );
            }
            at += n as u64;
        }
        pos = to;
    }
}

/// Where `file`'s next data at or after `pos` starts: `len` if none does.
fn next_data(file: &std::fs::File, pos: u64, len: u64) -> u64 {
    use std::os::fd::AsFd;
    match rustix::fs::seek(file.as_fd(), rustix::fs::SeekFrom::Data(pos)) {
        Ok(at) => at.min(len),
        Err(rustix::io::Errno::NXIO) => len,
        Err(e) => panic!("SEEK_DATA at {pos}: {e}"),
    }
}

/// Where the data run `pos` is in ends: `pos` itself where it is in a hole.
fn next_hole(file: &std::fs::File, pos: u64, len: u64) -> u64 {
    use std::os::fd::AsFd;
    if pos >= len {
        return len;
    }
    let at = rustix::fs::seek(file.as_fd(), rustix::fs::SeekFrom::Hole(pos))
        .unwrap_or_else(|e| panic!("SEEK_HOLE at {pos}: {e}"));
    at.min(len)
}

/// A proxy to `to` that passes at most `cut` bytes from the client, then drops both
/// sides; says how many client bytes it passed, once it has finished.
async fn proxy(
    to: std::net::SocketAddr,
    cut: Option<u64>,
) -> (u16, tokio::sync::oneshot::Receiver<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(to).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let back = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
        });
        let mut passed = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let n = cut.map_or(n, |c| n.min((c - passed) as usize));
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            passed += n as u64;
            if cut.is_some_and(|c| passed >= c) {
                break;
            }
        }
        if cut.is_some() {
            back.abort();
        } else {
            let _ = sw.shutdown().await;
            let _ = back.await;
        }
        let _ = tx.send(passed);
    });
    (port, rx)
}

/// Cut points from a seed the failure message shows.
fn cut_points(seed: u64, n: usize, max: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % max
        })
        .collect()
}

#[tokio::test]
async fn a_cut_transfer_never_leaves_half_a_file_and_partial_resumes_it() {
    let local = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let src = local.path().join("big");
    let data: Vec<u8> = (0..8_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let target = remote.path().join("big");
    std::fs::write(&target, b"the old file").unwrap();
    let addr = server_in(remote.path()).await;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for cut in cut_points(seed, 4, data.len() as u64) {
        let (port, _) = proxy(addr, Some(cut)).await;
        let run = cp(port, &[src.as_os_str(), os("127.0.0.1:big")]).await;
        assert_ne!(run.code, Some(0), "cut at {cut} (seed {seed})\n{run}");
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"the old file",
            "cut at {cut} (seed {seed})"
        );
        wait_until("the temporary file is removed", || {
            std::fs::read_dir(remote.path()).unwrap().count() == 1
        })
        .await;
    }
    // With --partial the bytes that arrived are kept, and the next try sends the rest.
    let (port, _) = proxy(addr, Some(data.len() as u64 / 2)).await;
    cp(
        port,
        &[os("--partial"), src.as_os_str(), os("127.0.0.1:big")],
    )
    .await;
    assert_eq!(std::fs::read(&target).unwrap(), b"the old file");
    let kept = remote.path().join(".big.rcmd-partial");
    wait_until("the cut file is kept", || {
        std::fs::metadata(&kept).is_ok_and(|m| m.len() > 1_000_000)
    })
    .await;
    let (port, passed) = proxy(addr, None).await;
    cp(
        port,
        &[os("--partial"), src.as_os_str(), os("127.0.0.1:big")],
    )
    .await
    .expect_code(0);
    assert!(
        std::fs::read(&target).unwrap() == data,
        "the resumed file differs"
    );
    assert!(!kept.exists());
    let passed = passed.await.unwrap();
    assert!(
        passed < data.len() as u64 * 3 / 4,
        "resumed, yet {passed} bytes were sent"
    );
    // Cut again with --partial, then copied whole without it: what was kept goes too,
    // rather than lie beside the file for ever.
    std::fs::write(&target, b"the old file").unwrap();
    let (port, _) = proxy(addr, Some(data.len() as u64 / 2)).await;
    cp(
        port,
        &[os("--partial"), src.as_os_str(), os("127.0.0.1:big")],
    )
    .await;
    wait_until("the cut file is kept", || {
        std::fs::metadata(&kept).is_ok_and(|m| m.len() > 1_000_000)
    })
    .await;
    cp(addr.port(), &[src.as_os_str(), os("127.0.0.1:big")])
        .await
        .expect_code(0);
    assert!(std::fs::read(&target).unwrap() == data, "the copy differs");
    assert!(!kept.exists(), "a whole copy left what --partial kept");
}

#[tokio::test]
async fn u_skips_files_whose_size_and_time_match() {
    let local = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let f = local.path().join("f");
    std::fs::write(&f, b"same").unwrap();
    let addr = server_in(remote.path()).await;
    cp(addr.port(), &[os("-p"), f.as_os_str(), os("127.0.0.1:")])
        .await
        .expect_code(0);
    let inode = std::fs::metadata(remote.path().join("f")).unwrap().ino();
    cp(
        addr.port(),
        &[os("-p"), os("-u"), f.as_os_str(), os("127.0.0.1:")],
    )
    .await
    .expect_code(0);
    assert_eq!(
        std::fs::metadata(remote.path().join("f")).unwrap().ino(),
        inode
    );
    std::fs::write(&f, b"changed").unwrap();
    cp(
        addr.port(),
        &[os("-p"), os("-u"), f.as_os_str(), os("127.0.0.1:")],
    )
    .await
    .expect_code(0);
    assert_eq!(std::fs::read(remote.path().join("f")).unwrap(), b"changed");
}

/// A server that answers a download with the entries `hostile` gives it.
async fn hostile_server(entries: Vec<Transfer>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (rd, wr) = socket.into_split();
        let header = rcmd::wire::header::HeaderFormat::NETWORK_U32;
        let mut rd = FramedRead::new(rd, ServerCodec::new(header, 1 << 20));
        let mut wr = FramedWrite::new(wr, ServerCodec::new(header, 1 << 20));
        let Some(Ok(ClientMessage::Hello(_))) = rd.next().await else {
            panic!("no hello");
        };
        wr.send(ServerMessage::Hello(Hello::new(1 << 20, Bytes::new())))
            .await
            .unwrap();
        let Some(Ok(ClientMessage::Copy(Transfer::Get { .. }))) = rd.next().await else {
            panic!("no copy request");
        };
        for e in entries {
            wr.send(ServerMessage::Copy(e)).await.unwrap();
        }
        // Read until the client's summary, or its hang-up.
        while let Some(Ok(m)) = rd.next().await {
            if matches!(m, ClientMessage::Copy(Transfer::Done(_))) {
                break;
            }
        }
    });
    port
}

fn entry(kind: Kind, name: &[u8], size: u64) -> Transfer {
    Transfer::Entry(Entry {
        kind,
        mode: 0o644,
        mtime: 0,
        atime: 0,
        size,
        name: Bytes::copy_from_slice(name),
        target: Bytes::new(),
    })
}

/// The messages that send `data` as a whole file after its entry.
fn body(data: &'static [u8]) -> Vec<Transfer> {
    let sum = ring::digest::digest(&ring::digest::SHA256, data);
    let mut h = [0u8; 32];
    h.copy_from_slice(sum.as_ref());
    vec![
        Transfer::Start(0),
        Transfer::Data(Bytes::from_static(data)),
        Transfer::Sum(h),
    ]
}

#[tokio::test]
async fn hostile_names_from_a_peer_write_nothing_outside() {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("dest");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("trap")).unwrap();
    std::os::unix::fs::symlink(outside.join("file"), dest.join("trapfile")).unwrap();
    let mut msgs = vec![Transfer::Total {
        top: 6,
        files: 5,
        bytes: 20,
    }];
    for name in [&b"../escaped"[..], b"/tmp/absolute", b"trapfile"] {
        msgs.push(entry(Kind::File, name, 4));
        msgs.extend(body(b"evil"));
    }
    msgs.push(entry(Kind::Dir, b"trap", 0));
    msgs.push(entry(Kind::File, b"inside", 4));
    msgs.extend(body(b"evil"));
    msgs.push(Transfer::Up);
    msgs.push(entry(Kind::Dir, b"..", 0));
    msgs.push(Transfer::Up);
    msgs.push(entry(Kind::File, b"fine", 4));
    msgs.extend(body(b"good"));
    msgs.push(Transfer::Finish);
    let port = hostile_server(msgs).await;
    // Asked for everything without a leading dot: the names are the ones to refuse.
    let run = cp(port, &[os("-r"), os("127.0.0.1:*"), dest.as_os_str()]).await;
    run.expect_code(1);
    let err = run.stderr_str();
    for want in [
        "leaves its directory",
        "a path, not a name",
        "symbolic link",
    ] {
        assert!(err.contains(want), "no {want:?} in\n{run}");
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "written outside"
    );
    assert!(!root.path().join("escaped").exists());
    assert!(!Path::new("/tmp/absolute").exists());
    assert_eq!(std::fs::read(dest.join("fine")).unwrap(), b"good");
}

/// `scp host:f /dev/null` (and to /dev/null on the host) is how many test a link: the
/// device named as the destination is written into, never replaced, as scp writes into it.
/// A device where a file would go under the sender's name is still no place for it. On a
/// null device of the test's own (`mknod c 1 3`), so no mistake can touch /dev/null.
#[tokio::test]
async fn a_copy_to_a_null_device_writes_into_it_and_leaves_it_a_device() {
    use std::os::unix::fs::FileTypeExt;
    let devices = tempfile::tempdir().unwrap();
    let null = devices.path().join("null");
    let made = std::process::Command::new("mknod")
        .args([null.as_os_str(), os("c"), os("1"), os("3")])
        .status();
    if !made.is_ok_and(|s| s.success()) {
        println!("skipped: mknod cannot make a device here (it needs root)");
        return;
    }
    let local = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let addr = server_in(remote.path()).await;
    // Data, then a hole at the end: both go into the device as they would into a file.
    let f = local.path().join("f");
    std::fs::write(&f, vec![5u8; 300_000]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(5 << 20)
        .unwrap();
    std::fs::copy(&f, remote.path().join("f")).unwrap();
    let is_device = || {
        std::fs::metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device()
    };
    let remote_null = format!("127.0.0.1:{}", null.display());
    for (from, to) in [
        (os("127.0.0.1:f"), null.as_os_str()),
        (f.as_os_str(), os(&remote_null)),
    ] {
        let run = cp(addr.port(), &[from, to]).await;
        run.expect_code(0);
        assert!(is_device(), "{run}");
    }
    // Into the device's directory under the sender's name: refused, as before (only the
    // destination the user named is written into).
    let also_null = local.path().join("null");
    std::fs::write(&also_null, b"x").unwrap();
    let into = format!("127.0.0.1:{}/", devices.path().display());
    let run = cp(addr.port(), &[also_null.as_os_str(), os(&into)]).await;
    run.expect_code(1);
    assert!(run.stderr_str().contains("not a regular file"), "{run}");
    assert!(is_device());
    assert_eq!(std::fs::read_dir(devices.path()).unwrap().count(), 1);
}

/// A download takes only the names it asked for, as scp has since OpenSSH 8.0
/// (CVE-2019-6111): a server answering `a.txt` with `.bashrc` must not be able to choose
/// what lands in the user's directory, even inside it.
#[tokio::test]
async fn a_server_cannot_choose_the_names_of_what_is_downloaded() {
    let dest = tempfile::tempdir().unwrap();
    let mut msgs = vec![Transfer::Total {
        top: 3,
        files: 3,
        bytes: 12,
    }];
    for name in [&b".bashrc"[..], b"a.txt", b"b.log"] {
        msgs.push(entry(Kind::File, name, 4));
        msgs.extend(body(b"data"));
    }
    msgs.push(Transfer::Finish);
    let port = hostile_server(msgs.clone()).await;
    let run = cp(port, &[os("127.0.0.1:a.txt"), dest.path().as_os_str()]).await;
    run.expect_code(1);
    assert!(
        run.stderr_str()
            .contains(".bashrc: refused from the peer: not a name that was asked for"),
        "{run}"
    );
    assert!(!dest.path().join(".bashrc").exists());
    assert!(!dest.path().join("b.log").exists());
    assert_eq!(std::fs::read(dest.path().join("a.txt")).unwrap(), b"data");

    // A glob takes what it matches, and its * no name with a leading dot, as the glob
    // that the server expanded.
    let dest = tempfile::tempdir().unwrap();
    let port = hostile_server(msgs).await;
    let run = cp(port, &[os("127.0.0.1:*.txt"), dest.path().as_os_str()]).await;
    run.expect_code(1);
    let names: Vec<_> = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["a.txt"], "{run}");
}

/// Copying onto a file that is there keeps what scp keeps, which writes into it: its
/// owner, group and permissions (unless -p gives the sender's). The name gets a new file,
/// as with rsync, so another hard link to the old one keeps the old contents. A file the
/// user may not write is not replaced, as scp fails to open it.
#[tokio::test]
async fn a_replaced_file_keeps_its_owner_and_mode_and_a_read_only_one_is_left() {
    if !rustix::process::geteuid().is_root() || !Path::new("/usr/bin/setpriv").exists() {
        println!("skipped: needs root (chown) and setpriv (another user)");
        return;
    }
    const NOBODY: u32 = 65534;
    let remote = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let addr = server_in(remote.path()).await;
    let kept = remote.path().join("kept");
    std::fs::write(&kept, b"old").unwrap();
    std::os::unix::fs::chown(&kept, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::hard_link(&kept, remote.path().join("kept.link")).unwrap();
    let src = local.path().join("kept");
    std::fs::write(&src, b"new contents").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    cp(addr.port(), &[src.as_os_str(), os("127.0.0.1:kept")])
        .await
        .expect_code(0);
    let meta = std::fs::metadata(&kept).unwrap();
    assert_eq!(std::fs::read(&kept).unwrap(), b"new contents");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o640, NOBODY, NOBODY)
    );
    assert_eq!(
        std::fs::read(remote.path().join("kept.link")).unwrap(),
        b"old"
    );
    // With -p the sender's mode; the owner is still the one that was there.
    cp(
        addr.port(),
        &[os("-p"), src.as_os_str(), os("127.0.0.1:kept")],
    )
    .await
    .expect_code(0);
    let meta = std::fs::metadata(&kept).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o755, NOBODY));

    // A user's own read-only file, downloaded onto by that user: refused, left as it
    // was. A writable one beside it is replaced.
    let theirs = tempfile::tempdir().unwrap();
    for name in ["read-only", "writable"] {
        let f = theirs.path().join(name);
        std::fs::write(&f, b"theirs").unwrap();
        std::os::unix::fs::chown(&f, Some(NOBODY), Some(NOBODY)).unwrap();
        let mode = if name == "writable" { 0o644 } else { 0o444 };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::write(remote.path().join(name), b"from the server").unwrap();
    }
    let home = theirs.path().join("home");
    std::fs::create_dir(&home).unwrap();
    for d in [theirs.path(), home.as_path()] {
        std::os::unix::fs::chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let port = addr.port().to_string();
    let rcmd_home = home.join("rcmd");
    let args = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        common::rcmd_bin(),
        "cp",
        "--plaintext",
        "-P",
        &port,
        "127.0.0.1:read-only",
        "127.0.0.1:writable",
        theirs.path().to_str().unwrap(),
    ];
    let env = [
        ("HOME", home.to_str().unwrap()),
        ("RCMD_HOME", rcmd_home.to_str().unwrap()),
    ];
    let run = common::run_env("setpriv", &args, b"", &env).await;
    run.expect_code(1);
    assert!(
        run.stderr_str().contains("read-only: permission denied"),
        "{run}"
    );
    let read = |name: &str| std::fs::read(theirs.path().join(name)).unwrap();
    assert_eq!(read("read-only"), b"theirs");
    assert_eq!(read("writable"), b"from the server");
}

/// A file whose last bytes are a hole ends as long as it was offered, even when empty
/// messages follow the hole: the receiver extends it only after a hole, so a peer must not be
/// able to make it forget one.
#[tokio::test]
async fn a_file_ending_in_a_hole_is_as_long_as_offered_whatever_follows_the_hole() {
    let dest = tempfile::tempdir().unwrap();
    let whole = b"ab\0\0\0\0\0\0";
    let sum = ring::digest::digest(&ring::digest::SHA256, whole);
    let mut h = [0u8; 32];
    h.copy_from_slice(sum.as_ref());
    let mut msgs = vec![Transfer::Total {
        top: 3,
        files: 3,
        bytes: 24,
    }];
    let endings: [&[Transfer]; 3] = [
        &[Transfer::Hole(6)],
        &[Transfer::Hole(6), Transfer::Data(Bytes::new())],
        &[Transfer::Hole(3), Transfer::Hole(3), Transfer::Hole(0)],
    ];
    for (i, ending) in endings.into_iter().enumerate() {
        msgs.push(entry(Kind::File, format!("f{i}").as_bytes(), 8));
        msgs.push(Transfer::Start(0));
        msgs.push(Transfer::Data(Bytes::from_static(b"ab")));
        msgs.extend(ending.iter().cloned());
        msgs.push(Transfer::Sum(h));
    }
    msgs.push(Transfer::Finish);
    let port = hostile_server(msgs).await;
    let run = cp(
        port,
        &[os("-r"), os("127.0.0.1:f*"), dest.path().as_os_str()],
    )
    .await;
    run.expect_code(0);
    for i in 0..3 {
        let got = std::fs::read(dest.path().join(format!("f{i}"))).unwrap();
        assert_eq!(got, whole, "f{i}");
    }
}

/// A remote path that fails is named as the user wrote it, as scp does, not by where the
/// server keeps it: the client's user has no use for the server's directory, and need not
/// learn it.
#[tokio::test]
async fn a_missing_remote_file_is_named_as_the_user_wrote_it() {
    let local = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    std::fs::create_dir(remote.path().join("sub")).unwrap();
    let addr = server_in(remote.path()).await;
    let dest = local.path().join("x");
    let run = cp(
        addr.port(),
        &[os("127.0.0.1:sub/missing"), dest.as_os_str()],
    )
    .await;
    run.expect_code(1);
    let err = run.stderr_str();
    // With the host, as written: a missing local file reads the same but for it.
    assert!(
        err.contains("rcmd: 127.0.0.1:sub/missing: no such file or directory"),
        "{run}"
    );
    assert!(!err.contains(remote.path().to_str().unwrap()), "{run}");
    let missing = local.path().join("nope");
    let run = cp(addr.port(), &[missing.as_os_str(), os("127.0.0.1:")]).await;
    run.expect_code(1);
    let here = format!("rcmd: {}: no such file or directory", missing.display());
    assert!(run.stderr_str().contains(&here), "{run}");
}

#[tokio::test]
async fn a_server_without_copy_is_named_as_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(ServerConfig {
        version: 2,
        ..ServerConfig::new(Protocol::Framed)
    })
    .await;
    let f = dir.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    let run = cp(addr.port(), &[f.as_os_str(), os("127.0.0.1:f")]).await;
    run.expect_code(255);
    assert!(run.stderr_str().contains("protocol version 2"), "{run}");
}

#[tokio::test]
async fn cp_works_over_tls_with_the_same_user_token() {
    let home = RcmdHome::new();
    let remote = tempfile::tempdir().unwrap();
    let server = home
        .server(&["--workdir", remote.path().to_str().unwrap()])
        .await;
    let local = tempfile::tempdir().unwrap();
    let f = local.path().join("f");
    std::fs::write(&f, b"over tls").unwrap();
    let port = server.addr.port().to_string();
    home.rcmd(&["cp", "-P", &port, f.to_str().unwrap(), "127.0.0.1:"], b"")
        .await
        .expect_code(0);
    assert_eq!(std::fs::read(remote.path().join("f")).unwrap(), b"over tls");
    server.stop().await;
}

#[tokio::test]
async fn twenty_hosts_take_an_upload_and_give_downloads_into_their_own_dirs() {
    // A working directory per server, by its address: the addresses may have gaps (other
    // test runs hold some of 127.0.0.x), so no arithmetic on them picks one.
    let dirs = std::sync::Mutex::new(std::collections::HashMap::new());
    let workdir = |ip: std::net::Ipv4Addr| -> PathBuf {
        let mut dirs = dirs.lock().unwrap();
        let dir = dirs
            .entry(ip)
            .or_insert_with(|| tempfile::tempdir().unwrap());
        dir.path().to_path_buf()
    };
    let (port, addrs) = start_servers_on_one_port(20, |ip| ServerConfig {
        workdir: Some(workdir(ip)),
        ..ServerConfig::new(Protocol::Framed)
    })
    .await;
    let workdirs: Vec<PathBuf> = addrs.iter().map(|ip| workdir(*ip)).collect();
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let list = list.join(",");
    let local = tempfile::tempdir().unwrap();
    let f = local.path().join("same name");
    std::fs::write(&f, b"to all").unwrap();
    let port = port.to_string();
    let up = rcmd(
        &[
            "cp",
            "--plaintext",
            "-P",
            &port,
            "-H",
            &list,
            f.to_str().unwrap(),
            ":",
        ],
        b"",
    )
    .await;
    up.expect_code(0);
    for d in &workdirs {
        assert_eq!(std::fs::read(d.join("same name")).unwrap(), b"to all");
        // Each host then has a file of its own under the same name.
        std::fs::write(d.join("same name"), d.to_str().unwrap()).unwrap();
    }
    let got = local.path().join("got");
    let down = rcmd(
        &[
            "cp",
            "--plaintext",
            "-P",
            &port,
            "-H",
            &list,
            ":same name",
            got.to_str().unwrap(),
        ],
        b"",
    )
    .await;
    down.expect_code(0);
    let dirs_made = std::fs::read_dir(&got).unwrap().count();
    assert_eq!(dirs_made, 20, "{down}");
    for (ip, from) in addrs.iter().zip(&workdirs) {
        let host_dir = got.join(ip.to_string());
        let content = std::fs::read(host_dir.join("same name")).unwrap();
        assert_eq!(content, from.to_str().unwrap().as_bytes(), "{}", ip);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_hosts_sharing_one_hash_per_file_each_get_every_byte() {
    // Files of a MiB and more are hashed once for all hosts, by whichever connection is
    // furthest along: in the clear each piece is sent by the kernel and read, if at all,
    // only to hash it; under TLS each connection reads its own and one of them hashes it.
    // Every host must get the same whole files, holes as holes, and none a wrong sum.
    let identity = rcmd::Identity::generate("rcmd test").unwrap();
    let tls = std::sync::Arc::new(rcmd::ServerTls::new(&identity, Vec::new(), false).unwrap());
    let token = "shared-hash-test-token";
    let dirs = std::sync::Mutex::new(std::collections::HashMap::new());
    let workdir = |ip: std::net::Ipv4Addr| -> PathBuf {
        let mut dirs = dirs.lock().unwrap();
        let dir = dirs
            .entry(ip)
            .or_insert_with(|| tempfile::tempdir().unwrap());
        dir.path().to_path_buf()
    };
    let (plain_port, plain) = start_servers_on_one_port(4, |ip| ServerConfig {
        workdir: Some(workdir(ip)),
        ..ServerConfig::new(Protocol::Framed)
    })
    .await;
    let (tls_port, over_tls) = start_servers_on_one_port(4, |ip| ServerConfig {
        workdir: Some(workdir(ip)),
        tls: Some(std::sync::Arc::clone(&tls)),
        token: Some(rcmd::Token::new(token.as_bytes()).unwrap()),
        ..ServerConfig::new(Protocol::Framed)
    })
    .await;

    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    // Byte i is i % 251 (no piece repeats at a power of two), in a file of 3 MiB and 7.
    let cycle = (0..=250u8).collect::<Vec<u8>>();
    let mut big = cycle.repeat((3 << 20) / 251 + 1);
    big.truncate((3 << 20) + 7);
    std::fs::write(tree.join("big"), &big).unwrap();
    // A MiB of data, a 5 MiB hole, a MiB and 3 of data.
    let sparse = std::fs::File::create(tree.join("sparse")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &big[..1 << 20], 0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &big[5..(1 << 20) + 8], 6 << 20).unwrap();
    drop(sparse);
    std::fs::write(tree.join("small"), b"under a MiB: hashed by each").unwrap();
    let expected: Vec<(&str, Vec<u8>)> = ["big", "sparse", "small"]
        .into_iter()
        .map(|name| (name, std::fs::read(tree.join(name)).unwrap()))
        .collect();

    let fingerprint = identity.fingerprint().to_string();
    for (port, addrs, secure) in [(plain_port, &plain, false), (tls_port, &over_tls, true)] {
        let hosts: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let hosts = hosts.join(",");
        let port = port.to_string();
        let mut args = vec!["cp", "-r", "-P", &port, "-H", &hosts];
        if secure {
            args.extend(["--fingerprint", &fingerprint]);
        } else {
            args.push("--plaintext");
        }
        args.extend([tree.to_str().unwrap(), ":"]);
        let run = common::run_env(common::rcmd_bin(), &args, b"", &[("RCMD_TOKEN", token)]).await;
        run.expect_code(0);
        for ip in addrs.iter() {
            let at = workdir(*ip).join("tree");
            for (name, bytes) in &expected {
                let got = std::fs::read(at.join(name)).unwrap();
                assert!(
                    got == *bytes,
                    "{name} on {ip} (TLS: {secure}) differs\n{run}"
                );
            }
            // The hole arrived as a hole: fewer blocks than the file's length.
            let meta = std::fs::metadata(at.join("sparse")).unwrap();
            assert!(
                meta.blocks() * 512 < meta.len(),
                "no hole on {ip} (TLS: {secure})"
            );
        }
    }
}

/// A client of our own making, past the hello with an in-process server that needs no
/// token: for copies that misbehave as rcmd's own client never does.
async fn hand_made_client(
    addr: std::net::SocketAddr,
) -> (
    FramedRead<tokio::net::tcp::OwnedReadHalf, rcmd::wire::message::ClientCodec>,
    FramedWrite<tokio::net::tcp::OwnedWriteHalf, rcmd::wire::message::ClientCodec>,
) {
    let header = rcmd::wire::header::HeaderFormat::NETWORK_U32;
    let (rd, wr) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut rd = FramedRead::new(rd, rcmd::wire::message::ClientCodec::new(header, 1 << 20));
    let mut wr = FramedWrite::new(wr, rcmd::wire::message::ClientCodec::new(header, 1 << 20));
    wr.send(ClientMessage::Hello(Hello::new(1 << 20, Bytes::new())))
        .await
        .unwrap();
    let Some(Ok(ServerMessage::Hello(_))) = rd.next().await else {
        panic!("no hello");
    };
    (rd, wr)
}

#[tokio::test]
async fn a_sender_that_falls_silent_is_given_up_and_its_file_removed() {
    let remote = tempfile::tempdir().unwrap();
    let addr = start_server(ServerConfig {
        workdir: Some(remote.path().to_path_buf()),
        limits: rcmd::server::Limits {
            idle_timeout: Some(std::time::Duration::from_millis(300)),
            ..rcmd::server::Limits::default()
        },
        ..ServerConfig::new(Protocol::Framed)
    })
    .await;
    let (mut rd, mut wr) = hand_made_client(addr).await;
    for t in [
        Transfer::Put {
            flags: Default::default(),
            dest: Bytes::from("f"),
        },
        Transfer::Total {
            top: 1,
            files: 1,
            bytes: 10,
        },
        entry(Kind::File, b"f", 10),
        Transfer::Start(0),
        Transfer::Data(Bytes::from("abc")),
    ] {
        wr.send(ClientMessage::Copy(t)).await.unwrap();
    }
    // The server hangs up once it has waited its idle timeout for the rest.
    let hung_up = tokio::time::timeout(common::PROCESS_DEADLINE, async {
        while let Some(Ok(_)) = rd.next().await {}
    })
    .await;
    assert!(
        hung_up.is_ok(),
        "the server kept waiting for a silent sender"
    );
    wait_until("the half-received file is removed", || {
        std::fs::read_dir(remote.path()).unwrap().count() == 0
    })
    .await;
}

#[tokio::test]
async fn a_receiver_that_stops_reading_is_given_up_and_frees_its_place() {
    // The server's writes stall on a full socket.
    receiver_falls_silent(true).await;
}

#[tokio::test]
async fn a_receiver_that_never_sends_its_summary_is_given_up() {
    // A sparse file goes as one hole message, so nothing stalls: the server waits for the
    // receiver's summary, which never comes.
    receiver_falls_silent(false).await;
}

/// Asks a server that lets one connection in at a time for a 64 MiB file (with data or
/// all hole), then neither reads nor says anything; another client must get in.
async fn receiver_falls_silent(with_data: bool) {
    const SIZE: u64 = 64 << 20;
    let remote = tempfile::tempdir().unwrap();
    let big = remote.path().join("big");
    if with_data {
        std::fs::write(&big, vec![b'a'; SIZE as usize]).unwrap();
    } else {
        std::fs::File::create(&big).unwrap().set_len(SIZE).unwrap();
    }
    let addr = start_server(ServerConfig {
        workdir: Some(remote.path().to_path_buf()),
        limits: rcmd::server::Limits {
            max_conns: 1,
            idle_timeout: Some(std::time::Duration::from_millis(300)),
            ..rcmd::server::Limits::default()
        },
        ..ServerConfig::new(Protocol::Framed)
    })
    .await;
    let (mut rd, mut wr) = hand_made_client(addr).await;
    wr.send(ClientMessage::Copy(Transfer::Get {
        flags: Default::default(),
        sources: vec![Bytes::from("big")],
    }))
    .await
    .unwrap();
    // Nothing more from us. Another client gets the place once the server gives up.
    let addr = addr.to_string();
    common::eventually("another client is served", || async {
        let r = rcmd(
            &["client", "--plaintext", &addr, "-n", "--", "echo in"],
            b"",
        )
        .await;
        r.code == Some(0) && r.stdout_str() == "in\n"
    })
    .await;
    // The server hung up: reading now ends (short of the whole file, with data).
    let mut data = 0u64;
    while let Some(Ok(m)) = rd.next().await {
        if let ServerMessage::Copy(Transfer::Data(d)) = m {
            data += d.len() as u64;
        }
    }
    if with_data {
        assert!(
            data < SIZE,
            "the whole file arrived: the server never gave up"
        );
    }
}

/// A proxy to `to` that passes the client's bytes until `hold_at` have gone, then holds
/// the rest until `release` fires; `held` fires when it starts holding.
async fn holding_proxy(
    to: std::net::SocketAddr,
    hold_at: u64,
) -> (
    u16,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (held_tx, held) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(to).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
            let _ = cw.shutdown().await;
        });
        let mut passed = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let (mut held_tx, mut release_rx) = (Some(held_tx), Some(release_rx));
        loop {
            if passed >= hold_at {
                if let (Some(tx), Some(rx)) = (held_tx.take(), release_rx.take()) {
                    let _ = tx.send(());
                    let _ = rx.await;
                }
            }
            let room = if held_tx.is_some() {
                ((hold_at - passed) as usize).min(buf.len())
            } else {
                buf.len()
            };
            let n = match cr.read(&mut buf[..room]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            passed += n as u64;
        }
        let _ = sw.shutdown().await;
    });
    (port, held, release)
}

#[tokio::test]
async fn a_file_that_shrinks_while_it_is_sent_is_refused_not_written() {
    // Sent from the file by the kernel in the clear, and read into memory under TLS: the
    // file loses its second half while the connection holds the sender back, and the
    // receiver must drop it, leaving nothing at the target and no temporary file.
    let home = RcmdHome::new();
    let remote = tempfile::tempdir().unwrap();
    let tls = home
        .server(&["--workdir", remote.path().to_str().unwrap()])
        .await;
    let plain = server_in(remote.path()).await;
    let local = tempfile::tempdir().unwrap();
    const SIZE: usize = 64 << 20;
    // Byte i is i % 251, made by repeating one cycle (a per-byte loop is slow unoptimized).
    let mut data = (0..=250u8).collect::<Vec<u8>>().repeat(SIZE / 251 + 1);
    data.truncate(SIZE);
    // Then the same with the file rewritten in place instead, its size unchanged: over
    // TLS the sender hashed what it read, so only the file's change time can tell.
    let cases = [(false, plain), (true, tls.addr)];
    for (rewrite, (over_tls, to)) in [false, true]
        .into_iter()
        .flat_map(|r| cases.map(|c| (r, c)))
    {
        let src = local.path().join("shrinking");
        std::fs::write(&src, &data).unwrap();
        let (port, held, release) = holding_proxy(to, 2 << 20).await;
        let port = port.to_string();
        let mut args = vec!["cp", "-P", &port];
        if !over_tls {
            args.push("--plaintext");
        }
        let srcs = src.to_str().unwrap().to_string();
        args.extend([srcs.as_str(), "127.0.0.1:shrunk"]);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let copying = {
            let home_path = home.path().to_path_buf();
            tokio::spawn(async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let home = home_path.to_str().unwrap();
                common::run_env(common::rcmd_bin(), &args, b"", &[("RCMD_HOME", home)]).await
            })
        };
        held.await.unwrap();
        // The sender is at most a few MiB in (what the sockets hold): cut to half, or
        // write over the start it has sent.
        let file = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
        if rewrite {
            std::os::unix::fs::FileExt::write_all_at(&file, &[b'x'; 4096], 0).unwrap();
        } else {
            file.set_len(SIZE as u64 / 2 + 12_345).unwrap();
        }
        release.send(()).unwrap();
        let run = copying.await.unwrap();
        assert_eq!(run.code, Some(1), "over TLS: {over_tls}\n{run}");
        let why = if rewrite { "changed" } else { "shrank" };
        assert!(
            run.stderr_str().contains(why),
            "over TLS: {over_tls}\n{run}"
        );
        wait_until("the temporary file is removed", || {
            std::fs::read_dir(remote.path()).unwrap().count() == 0
        })
        .await;
    }
    tls.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_terminal_the_total_stays_once_the_bars_are_done() {
    // As scp leaves each file's last line: after the bars, what moved and how fast.
    let local = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("one"), vec![7u8; 300_000]).unwrap();
    std::fs::write(local.path().join("two"), b"2").unwrap();
    // Old times, so only -p can make the copies' times equal to them.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    for name in ["one", "two"] {
        std::fs::File::options()
            .write(true)
            .open(local.path().join(name))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let addr = server_in(remote.path()).await;
    // Run twice, the second time with -u: everything is already there, and the rate left
    // on screen must not count bytes that did not move. The first keeps the times (-p), so
    // the second finds them equal whatever second each copy ran in.
    let line = format!(
        "{bin} cp -p --plaintext -P {port} one two 127.0.0.1: && \\\n\
         {bin} cp -u --plaintext -P {port} one two 127.0.0.1:",
        bin = common::rcmd_bin(),
        port = addr.port()
    );
    let src = local.path().to_path_buf();
    let screen = tokio::task::spawn_blocking(move || {
        let tmux = common::tmux::Tmux::start(|dir| {
            format!(
                "cd {src}\nexport HOME={dir} RCMD_HOME={dir}/rcmd\n{line}\n\
                 echo \"exit=$?\" > {dir}/code\nsleep 60\n",
                src = src.display(),
                dir = dir.display(),
            )
        })?;
        let code = tmux.wait_for_file(&tmux.dir().join("code"));
        assert_eq!(code.trim(), "exit=0", "{}", tmux.screen());
        Some(tmux.screen())
    })
    .await
    .unwrap();
    let Some(screen) = screen else { return };
    let totals: Vec<&str> = screen
        .lines()
        .map(str::trim_end)
        .filter(|l| l.contains("total: 2 files"))
        .collect();
    assert_eq!(totals.len(), 2, "{screen}");
    for total in &totals {
        assert!(total.contains("292.97 KiB/292.97 KiB in "), "{screen}");
    }
    assert!(!totals[0].ends_with(", 0 B/s"), "{screen}");
    assert!(totals[1].ends_with(", 0 B/s"), "{screen}");
    assert_eq!(std::fs::read(remote.path().join("two")).unwrap(), b"2");
}
