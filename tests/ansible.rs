//! The Ansible collection in `ansible/`, driven by real Ansible (ansible-core from PyPI, in
//! a virtual environment kept under the target directory): ten rcmd servers on
//! 127.0.0.2-11, one port, each with a home of its own, and a loopback address where
//! nothing listens. Skipped, saying so, where Python cannot make the environment.
//!
//! Not run by a plain `cargo test`: real ansible-core on ten hosts is 40-50 s of CPU on
//! two cores, more than the rest of the suite together. `.ci/run` runs it after the suite,
//! and `cargo test --test ansible -- --ignored` runs it alone.

mod common;

use std::path::{Path, PathBuf};

use common::{RcmdHome, ServerProcess};

/// The virtual environment with ansible-core (made once by `scripts/ansible-venv`), or
/// None where Python has no venv or pip cannot install (then the test is skipped, except
/// in CI, where that is a failure).
async fn ansible_venv() -> Option<PathBuf> {
    let target = Path::new(common::rcmd_bin())
        .ancestors()
        .nth(2)
        .expect("the binary lives in target/PROFILE/");
    let dir = target.join("ansible-venv");
    let script = common::peer("scripts/ansible-venv");
    let r = common::run(&script, &[dir.to_str().unwrap()], b"").await;
    if r.code == Some(0) {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must be able to install ansible-core: {r}"
    );
    println!("skipped: cannot make a Python venv with ansible-core (python3-venv and pip, and PyPI, are needed):\n{r}");
    None
}

/// Ten servers on 127.0.0.2-11 sharing one port, each with its own RCMD_HOME and HOME:
/// the first picks the port, the other nine start together on it.
async fn servers() -> (Vec<(RcmdHome, tempfile::TempDir, ServerProcess)>, u16) {
    let first = server(2, 0).await;
    let port = first.2.addr.port();
    let rest = futures_util::future::join_all((3..=11).map(|last| server(last, port))).await;
    (std::iter::once(first).chain(rest).collect(), port)
}

/// A server on 127.0.0.LAST:PORT with a new RCMD_HOME and HOME.
async fn server(last: u8, port: u16) -> (RcmdHome, tempfile::TempDir, ServerProcess) {
    let rcmd_home = RcmdHome::new();
    let home = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.{last}:{port}");
    let server = rcmd_home
        .server_env(
            // Ansible's async runs its job in the background after the command that
            // started it ends: rcmd kills such processes unless told to let them live.
            &["--listen", &listen, "--allow-detach"],
            &[("HOME", home.path().to_str().unwrap())],
        )
        .await;
    (rcmd_home, home, server)
}

/// Runs an Ansible command with everything Ansible writes kept in `dir`.
async fn ansible(venv: &Path, dir: &Path, program: &str, args: &[&str]) -> common::Run {
    let bin = venv.join("bin");
    // rcmd is found on PATH, as a user's would be (the inventory does not name it), while
    // the current directory, where a bare `rcmd` would also be looked for, has none.
    let rcmd_dir = Path::new(common::rcmd_bin()).parent().unwrap();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        rcmd_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let d = |sub: &str| dir.join(sub).to_str().unwrap().to_string();
    let env = [
        ("PATH", path),
        ("HOME", d("home")),
        ("ANSIBLE_HOME", d("home/.ansible")),
        ("ANSIBLE_LOCAL_TEMP", d("tmp")),
        ("ANSIBLE_CONFIG", d("ansible.cfg")),
        ("RCMD_TEST_BIG_FILE", d("big.bin")),
        ("XDG_CONFIG_HOME", d("home/.config")),
        ("XDG_CACHE_HOME", d("home/.cache")),
        ("ANSIBLE_FORCE_COLOR", "0".into()),
    ];
    let program = bin.join(program);
    let mut cmd = tokio::process::Command::new(&program);
    common::without_terminal(&mut cmd)
        .envs(env)
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let command = format!("{} {}", program.display(), shell_words::join(args));
    // A playbook on eleven hosts takes tens of seconds alone, and minutes on a machine
    // busy with builds: a bound that catches a hang, not one the test waits out.
    let out = tokio::time::timeout(std::time::Duration::from_secs(900), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{command} did not finish"))
        .unwrap();
    common::Run {
        command,
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real Ansible on ten hosts, 45 s: .ci/run runs it, or cargo test --test ansible -- --ignored"]
async fn playbooks_run_through_rcmd_on_ten_hosts() {
    let Some(venv) = ansible_venv().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["home", "tmp", "fetched"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(
        d.join("ansible.cfg"),
        format!(
            "[defaults]\ncollections_path = {collections}\ninventory = {inventory}\n\
             forks = 11\n[connection]\npipelining = True\n",
            collections = d.join("collections").display(),
            inventory = d.join("inventory.ini").display(),
        ),
    )
    .unwrap();

    // Installed as a user would, from the repository's path, while the servers start.
    let collection = common::peer("ansible");
    let collections = d.join("collections");
    let install_args = [
        "collection",
        "install",
        "-p",
        collections.to_str().unwrap(),
        &collection,
    ];
    let install = ansible(&venv, d, "ansible-galaxy", &install_args);
    let ((servers, port), installed) = tokio::join!(servers(), install);
    installed.expect_code(0);

    // 100 MiB that no two runs share, so a copy that lost or reordered bytes is seen.
    let seed = common::unique_marker();
    let mut piece = Vec::with_capacity(1 << 20);
    while piece.len() < 1 << 20 {
        piece.extend_from_slice(format!("{seed} {}\n", piece.len()).as_bytes());
    }
    piece.truncate(1 << 20);
    std::fs::write(d.join("big.bin"), piece.repeat(100)).unwrap();

    let mut inventory = String::from("[rcmd]\n");
    let fingerprints = futures_util::future::join_all(
        servers
            .iter()
            .map(|(home, _, _)| home.rcmd(&["fingerprint"], b"")),
    )
    .await;
    for ((home, _, server), fp) in servers.iter().zip(fingerprints) {
        fp.expect_code(0);
        inventory += &format!(
            "{ip} ansible_host={ip} ansible_rcmd_fingerprint={fp} ansible_rcmd_token_file={token}\n",
            ip = server.addr.ip(),
            fp = fp.stdout_str().trim(),
            token = home.token_file().display(),
        );
    }
    let python = common::run("python3", &["-c", "import sys; print(sys.executable)"], b"").await;
    python.expect_code(0);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let sudo = root && Path::new("/usr/bin/sudo").exists();
    inventory += &format!(
        "[big]\n127.0.0.2\n[down]\n127.0.0.12\n[all:vars]\nansible_connection=rcmd.rcmd.rcmd\n\
         ansible_port={port}\nansible_python_interpreter={python}\n\
         fetched={fetched}\nsudo_available={sudo}\n",
        python = python.stdout_str().trim(),
        fetched = d.join("fetched").display(),
    );
    if !sudo {
        println!("become is not tried: it needs sudo and root here");
    }
    std::fs::write(d.join("inventory.ini"), inventory).unwrap();

    // The ad hoc command and the playbook at once: they share nothing but the servers.
    // Ad hoc, with -vvv: the rcmd command line is shown, with the token file's name only.
    let playbook = common::peer("tests/ansible/playbook.yml");
    let playbook_args = [playbook.as_str()];
    let (r, played) = tokio::join!(
        ansible(
            &venv,
            d,
            "ansible",
            &["127.0.0.2", "-m", "command", "-a", "echo ad-hoc", "-vvv"],
        ),
        ansible(&venv, d, "ansible-playbook", &playbook_args),
    );
    r.expect_code(0);
    let out = r.stdout_str();
    assert!(out.contains("ad-hoc"), "{r}");
    assert!(
        out.contains(&format!("client 127.0.0.2:{port} -T --connect-timeout")),
        "{r}"
    );
    let token = std::fs::read_to_string(servers[0].0.token_file()).unwrap();
    assert!(!out.contains(token.trim()), "the token was shown: {r}");

    let r = played;
    let out = r.stdout_str();
    // Every rcmd host did everything; the one with no server is unreachable, with
    // rcmd's own reason (ansible-playbook then exits 4).
    for (_, _, server) in &servers {
        let ip = server.addr.ip().to_string();
        let recap = out
            .lines()
            .find(|l| l.starts_with(&format!("{ip} ")))
            .unwrap_or_else(|| panic!("no recap for {ip}: {r}"));
        assert!(
            recap.contains("unreachable=0") && recap.contains("failed=0"),
            "{recap}\n{r}"
        );
    }
    let down = out
        .lines()
        .find(|l| l.starts_with("127.0.0.12 "))
        .unwrap_or_else(|| panic!("no recap for the host with no server: {r}"));
    assert!(down.contains("unreachable=1"), "{down}\n{r}");
    assert!(out.contains("rcmd: cannot connect to 127.0.0.12"), "{r}");
    r.expect_code(4);
    for (_, _, server) in &servers {
        let fetched = d.join(format!("fetched/{}.txt", server.addr.ip()));
        assert!(fetched.exists(), "{} was not fetched", fetched.display());
    }
    let big = servers[0].1.path().join("big.bin");
    assert_eq!(
        std::fs::read(&big).unwrap(),
        std::fs::read(d.join("big.bin")).unwrap(),
        "the 100 MiB copy differs"
    );
}
