//! The stager against real processes: inbox drops (rename and READY), push, get, crash points
//! of the spool journal, bundles dropped while it is down, the bad-bundle corpus, and a leader
//! kill during ingest. Each scenario runs on a local store and on a real S3 server.

use std::path::Path;
use std::time::Duration;

use plotter2_node::protocol::{Op, ReadOp, Reply};

use crate::support::{
    Cluster, Opts, S3Server, Stager, bundles_of, drop_bundle, manifest_for, read_tree, wait_for,
    wait_versions, write_bundle,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Where blobs go in a scenario.
enum Store {
    Local,
    S3,
}

/// The store URL for `kind`, starting an S3 server when asked (kept alive by the return).
fn store_for(kind: &Store, dir: &Path) -> (String, Option<S3Server>) {
    match kind {
        Store::Local => (dir.join("source").to_string_lossy().into_owned(), None),
        Store::S3 => {
            let s3 = S3Server::start(dir);
            (s3.url(), Some(s3))
        }
    }
}

async fn tour(kind: Store) {
    let c = Cluster::start(1, Opts::default()).await;
    let (store, _s3) = store_for(&kind, c.dir.path());
    let home = c.dir.path().join("stager");
    let stager = Stager::start(&c, &home, &store);
    let client = c.client().await;
    let addr = "/sources/tali/experiment2";

    // 1. A drop by rename, with nested folders, an executable and an empty file.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    drop_bundle(
        &stager.inbox(),
        "run7",
        Some(&manifest_for(addr)),
        &[
            ("output_data/weights.csv", b"w\n1\n2\n"),
            ("output_data/big.bin", &big),
            ("empty.txt", b""),
            ("bin/run.sh", b"#!/bin/sh\necho hi\n"),
        ],
    );
    let v = wait_versions(&client, addr, 1, LIMIT).await;
    assert_eq!(v[0]["version"], 1);
    assert_eq!(v[0]["files"], 5, "4 files + manifest.json: {v:?}");
    assert_eq!(
        v[0]["user"], "tali",
        "the manifest's user is the provenance"
    );
    assert!(v[0]["id"].as_str().unwrap().starts_with("b3:"));
    assert!(
        !stager.inbox().join("run7").exists(),
        "taken out of the inbox"
    );

    // 2. Written in place: nothing happens until READY. A later bundle (renamed in) is
    // committed first, which proves the scan saw the partial folder and left it alone.
    let partial = stager.inbox().join("a-partial");
    write_bundle(
        &partial,
        Some(&manifest_for("/sources/tali/inplace")),
        &[("part1.csv", b"1")],
    );
    drop_bundle(
        &stager.inbox(),
        "b-complete",
        Some(&manifest_for("/sources/tali/other")),
        &[("x.csv", b"x")],
    );
    wait_versions(&client, "/sources/tali/other", 1, LIMIT).await;
    assert!(
        bundles_of(&client, "/sources/tali/inplace")
            .await
            .is_empty(),
        "a folder written in place without READY must not be ingested"
    );
    assert!(partial.join("part1.csv").exists());
    std::fs::write(partial.join("part2.csv"), b"2").unwrap();
    std::fs::write(partial.join("READY"), b"").unwrap();
    let v = wait_versions(&client, "/sources/tali/inplace", 1, LIMIT).await;
    assert_eq!(v[0]["files"], 3, "READY is not part of the bundle: {v:?}");

    // 3. Push from "another machine": a folder anywhere, sent over NATS.
    let run8 = c.dir.path().join("run8");
    // Over the multipart threshold: many chunks over NATS, then parts to the store.
    let large: Vec<u8> = (0..(33u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    write_bundle(
        &run8,
        Some(r#"{"manifest_version": 1}"#),
        &[
            ("output_data/weights.csv", b"w\n3\n4\n"),
            ("notes.md", b"# run 8\n"),
            ("output_data/large.bin", &large),
        ],
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            run8.join("notes.md"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let out = stager.cli_ok(&["push", run8.to_str().unwrap(), addr, "--json"]);
    let pushed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pushed["bundle"]["version"], 2);
    assert_eq!(pushed["bundle"]["existing"], false);
    assert_eq!(pushed["address"], addr);
    // The same folder again is the same version, and nothing is sent.
    let again: serde_json::Value =
        serde_json::from_str(&stager.cli_ok(&["push", run8.to_str().unwrap(), addr, "--json"]))
            .unwrap();
    assert_eq!(again["bundle"]["version"], 2);
    assert_eq!(again["bundle"]["existing"], true);
    assert_eq!(
        again["sent_bytes"], 0,
        "a re-push sends only what is missing"
    );

    // 4. show --json lists both versions with provenance and manifest.
    let show = c.cli_json(&["show", addr, "--json"]);
    let b = show["bundles"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[1]["user"], "tali");
    assert_eq!(b[1]["manifest"]["manifest_version"], 1);
    assert_eq!(b[1]["id"], pushed["bundle"]["id"]);

    // 5. get: byte-identical trees (content and modes), one file to stdout.
    let restored = c.dir.path().join("restored");
    stager.cli_ok(&[
        "get",
        &format!("{addr}@2"),
        "--to",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(read_tree(&restored), read_tree(&run8));
    let one = stager.cli_ok(&["get", &format!("{addr}@latest:output_data/weights.csv")]);
    assert_eq!(one, "w\n3\n4\n");
    let restored1 = c.dir.path().join("restored1");
    stager.cli_ok(&[
        "get",
        &format!("{addr}@1"),
        "--to",
        restored1.to_str().unwrap(),
    ]);
    let tree1 = read_tree(&restored1);
    assert_eq!(tree1["output_data/big.bin"].0, big);
    assert_eq!(tree1["empty.txt"].0, b"");
    // Errors name what is wrong.
    let (ok, _, err) = stager.cli(&["get", &format!("{addr}@9")]);
    assert!(!ok && err.contains("has no version 9"), "{err}");
    let (ok, _, err) = stager.cli(&["get", &format!("{addr}@1:nope.csv")]);
    assert!(!ok && err.contains("no file \"nope.csv\""), "{err}");
    let (ok, _, err) = stager.cli(&[
        "get",
        &format!("{addr}@2"),
        "--to",
        restored.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("not empty"), "{err}");

    // The default destination is the home's output folder; a repeated get replaces it.
    let p2home = c.dir.path().join("cli-home");
    for _ in 0..2 {
        stager.cli_ok(&["get", addr, "--home", p2home.to_str().unwrap()]);
    }
    let default_dest = p2home.join("output/sources/tali/experiment2/v2");
    assert_eq!(read_tree(&default_dest), read_tree(&run8));

    // 6. history has both versions.
    let history = c.cli_json(&["history", addr, "--json"]);
    let added: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "bundle_added")
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(added, vec![1, 2]);
    wait_for(LIMIT, "the spool to empty", || async {
        stager.spool_entries().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tour_local_store() {
    tour(Store::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tour_s3_store() {
    tour(Store::S3).await;
}

/// kill -9 at each journal step, restart: committed once, byte-identical, spool empty.
async fn crash_points(kind: Store) {
    let c = Cluster::start(1, Opts::default()).await;
    let (store, _s3) = store_for(&kind, c.dir.path());
    let home = c.dir.path().join("stager");
    let mut stager = Stager::start(&c, &home, &store);
    stager.kill9();
    let client = c.client().await;
    for (i, step) in ["received", "hashed", "uploaded", "committed", "cleaned"]
        .iter()
        .enumerate()
    {
        let addr = format!("/crash/{step}");
        let files: Vec<(String, Vec<u8>)> = (0..5)
            .map(|k| {
                (
                    format!("d{k}/f{k}.bin"),
                    vec![(i * 10 + k) as u8; 10_000 + k],
                )
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        let source = c.dir.path().join(format!("orig-{step}"));
        write_bundle(&source, Some(&manifest_for(&addr)), &refs);
        drop_bundle(&stager.inbox(), step, Some(&manifest_for(&addr)), &refs);

        stager.crash_at = Some(step.to_string());
        stager.spawn();
        let status = stager.wait_exit(LIMIT).await;
        assert!(
            !status.success(),
            "{step}: the crash point kills the stager"
        );
        stager.crash_at = None;
        stager.spawn();
        let v = wait_versions(&client, &addr, 1, LIMIT).await;
        wait_for(LIMIT, "the spool to empty", || async {
            stager.spool_entries().is_empty().then_some(())
        })
        .await;
        // Exactly once: one version, one ingest in the request log for this address.
        assert_eq!(v.len(), 1, "{step}: {v:?}");
        let requests = c.cli_json(&["requests", "--json"]);
        let ingests = requests
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["verb"] == "ingest" && r["target"] == addr.as_str())
            .count();
        assert_eq!(ingests, 1, "{step}: one ingest request");
        let restored = c.dir.path().join(format!("restored-{step}"));
        stager.cli_ok(&["get", &addr, "--to", restored.to_str().unwrap()]);
        assert_eq!(read_tree(&restored), read_tree(&source), "{step}");
        stager.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_points_local_store() {
    crash_points(Store::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_points_s3_store() {
    crash_points(Store::S3).await;
}

/// Bundles dropped while no stager runs are ingested when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_dropped_while_down_are_ingested_at_start() {
    let c = Cluster::start(1, Opts::default()).await;
    let home = c.dir.path().join("stager");
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let mut stager = Stager::start(&c, &home, &store);
    stager.kill9();
    for i in 0..3 {
        drop_bundle(
            &stager.inbox(),
            &format!("offline{i}"),
            Some(&manifest_for(&format!("/offline/n{i}"))),
            &[("data.csv", format!("{i}\n").as_bytes())],
        );
    }
    stager.spawn();
    let client = c.client().await;
    for i in 0..3 {
        wait_versions(&client, &format!("/offline/n{i}"), 1, LIMIT).await;
    }
    // Idle means idle: its own inbox scans must not wake it again (they once did, via
    // inotify's open events, and spun a core).
    let pid = stager.pid().unwrap();
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = cpu();
    tokio::time::sleep(Duration::from_secs(2)).await; // the measuring interval
    let ticks = cpu() - before;
    assert!(ticks < 50, "an idle stager used {ticks} clock ticks in 2 s");
}

/// Every kind of bad bundle lands in rejected/ with its reason; good ones keep flowing.
async fn bad_bundles(kind: Store) {
    let c = Cluster::start(1, Opts::default()).await;
    let (store, _s3) = store_for(&kind, c.dir.path());
    let home = c.dir.path().join("stager");
    let mut stager = Stager::start(&c, &home, &store);
    stager.kill9();
    stager.unprivileged = true;
    stager.spawn();
    let inbox = stager.inbox();
    let ok_files: &[(&str, &[u8])] = &[("a.csv", b"1")];
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no-manifest", None, "no manifest.json"),
        ("broken-json", Some("{not json".into()), "not valid JSON"),
        (
            "unknown-version",
            Some(r#"{"manifest_version": 7, "meta": {"address": "/bad/x"}}"#.into()),
            "manifest_version 7 is not supported",
        ),
        (
            "missing-field",
            Some(
                r#"{"manifest_version": 1, "meta": {"address": "/bad/x"},
                    "contains": {"package": {"tasks": {"train": {"run": ["true"]}}}}}"#
                    .into(),
            ),
            "contains.package.tasks.train",
        ),
        (
            "dotdot-path",
            Some(
                r#"{"manifest_version": 1, "meta": {"address": "/bad/x"},
                    "contains": {"data": ["../secret/**"]}}"#
                    .into(),
            ),
            "leaves the bundle",
        ),
        (
            "absolute-path",
            Some(
                r#"{"manifest_version": 1, "meta": {"address": "/bad/x"},
                    "contains": {"data": ["/etc/passwd"]}}"#
                    .into(),
            ),
            "is absolute",
        ),
        (
            "bad-address",
            Some(r#"{"manifest_version": 1, "meta": {"address": "sources/x"}}"#.into()),
            "must start with '/'",
        ),
        (
            "no-address",
            Some(r#"{"manifest_version": 1}"#.into()),
            "names no target address",
        ),
        (
            "symlink-out",
            Some(manifest_for("/bad/x")),
            "outside the bundle",
        ),
        ("fifo", Some(manifest_for("/bad/x")), "is a fifo"),
        ("unreadable", Some(manifest_for("/bad/x")), "cannot be read"),
        ("device", Some(manifest_for("/bad/x")), "device file"),
    ];
    for (name, manifest, _) in &cases {
        let staging = inbox.join(".incoming").join(name);
        write_bundle(&staging, manifest.as_deref(), ok_files);
        match *name {
            "symlink-out" => {
                std::os::unix::fs::symlink("/etc/hostname", staging.join("link")).unwrap()
            }
            "unreadable" => {
                use std::os::unix::fs::PermissionsExt;
                let p = staging.join("secret.csv");
                std::fs::write(&p, b"no").unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
            }
            "fifo" => {
                let p = std::ffi::CString::new(staging.join("pipe").to_str().unwrap()).unwrap();
                // SAFETY: mkfifo on a path we own.
                assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o644) }, 0);
            }
            "device" => {
                // /dev/null's twin, when we may make one (root); else a socket, also refused.
                let p = staging.join("null");
                let cp = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
                // SAFETY: mknod on a path we own.
                let made =
                    unsafe { libc::mknod(cp.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) }
                        == 0;
                if !made {
                    let _ = std::os::unix::net::UnixListener::bind(&p).unwrap();
                }
            }
            _ => {}
        }
        std::fs::rename(&staging, inbox.join(name)).unwrap();
    }
    drop_bundle(&inbox, "zz-good", Some(&manifest_for("/good/x")), ok_files);
    // Refused by the coordinator after upload: an archived target.
    c.cli_ok(&["new", "/bad/archived"]);
    c.cli_ok(&["archive", "/bad/archived"]);
    drop_bundle(
        &inbox,
        "archived-target",
        Some(&manifest_for("/bad/archived")),
        &[("kept.csv", b"mine")],
    );

    let client = c.client().await;
    wait_versions(&client, "/good/x", 1, LIMIT).await;
    let rejected = inbox.join("rejected");
    for (name, _, why) in &cases {
        let error_file = rejected.join(format!("{name}.error.txt"));
        let text = wait_for(LIMIT, &format!("{}", error_file.display()), || async {
            std::fs::read_to_string(&error_file).ok()
        })
        .await;
        let why = if *name == "device" && !text.contains(why) {
            "is a socket"
        } else {
            why
        };
        assert!(text.contains(why), "{name}: expected {why:?} in:\n{text}");
        assert!(
            text.contains("move it back into the inbox"),
            "{name}: says how to retry"
        );
        assert!(
            rejected.join(name).join("a.csv").exists(),
            "{name}: nothing is deleted"
        );
    }
    assert!(bundles_of(&client, "/bad/x").await.is_empty());
    let error_file = rejected.join("archived-target.error.txt");
    let text = wait_for(LIMIT, "the archived target's rejection", || async {
        std::fs::read_to_string(&error_file).ok()
    })
    .await;
    assert!(
        text.contains("coordinator refused") && text.contains("archived"),
        "{text}"
    );
    // The store may have taken the files by hard link: the rejected copy is the user's own
    // again (own inode, original mode), so editing it cannot touch a stored blob.
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(rejected.join("archived-target/kept.csv")).unwrap();
        assert_eq!(meta.nlink(), 1);
        assert_eq!(meta.mode() & 0o777, 0o644);
    }
    // The error file is written before the spool entry is dropped.
    wait_for(LIMIT, "the spool to empty", || async {
        stager.spool_entries().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_local_store() {
    bad_bundles(Store::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_s3_store() {
    bad_bundles(Store::S3).await;
}

/// kill -9 of the raft leader while 20 bundles are being ingested: all 20 committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_during_ingest_of_20_bundles() {
    let mut c = Cluster::start(3, Opts::default()).await;
    let home = c.dir.path().join("stager");
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &home, &store);
    let addr = "/ingest/leader-kill";
    let drop_one = |i: u32| {
        let body = format!("bundle {i}\n").repeat(1000);
        drop_bundle(
            &stager.inbox(),
            &format!("b{i:02}"),
            Some(&manifest_for(addr)),
            &[("data.txt", body.as_bytes())],
        );
    };
    for i in 0..10 {
        drop_one(i);
    }
    let client = c.client().await;
    wait_versions(&client, addr, 1, LIMIT).await;
    let leader = c.wait_leader(LIMIT).await;
    c.coord(leader).kill9();
    // The rest arrive while there is no leader: their ingests must wait for the election.
    for i in 10..20 {
        drop_one(i);
    }
    let v = wait_versions(&client, addr, 20, Duration::from_secs(60)).await;
    assert_eq!(v.len(), 20, "exactly 20 versions");
    let mut bundle_ids: Vec<&str> = v.iter().map(|b| b["id"].as_str().unwrap()).collect();
    bundle_ids.sort();
    bundle_ids.dedup();
    assert_eq!(bundle_ids.len(), 20, "20 distinct bundles, none twice");
    let Reply::Requests(log) = client
        .call(Op::Read(ReadOp::Requests {
            after: 0,
            limit: 1000,
        }))
        .await
        .unwrap()
    else {
        panic!("requests");
    };
    let ingests = log.iter().filter(|r| r.verb == "ingest").count();
    assert_eq!(
        ingests, 20,
        "one ingest request per bundle, retries deduplicated"
    );
    wait_for(LIMIT, "the spool to empty", || async {
        stager.spool_entries().is_empty().then_some(())
    })
    .await;
}

/// Two stagers (own inboxes) on one cluster and store both ingest; a push interrupted by a
/// kill -9 of the stager resumes and sends only what the stagers did not have yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_stagers_and_push_resumes_after_a_stager_crash() {
    let c = Cluster::start(1, Opts::default()).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let mut first = Stager::start(&c, &c.dir.path().join("s1"), &store);
    let second = Stager::start(&c, &c.dir.path().join("s2"), &store);
    let client = c.client().await;
    drop_bundle(
        &first.inbox(),
        "x",
        Some(&manifest_for("/multi/one")),
        &[("a", b"1")],
    );
    drop_bundle(
        &second.inbox(),
        "y",
        Some(&manifest_for("/multi/two")),
        &[("b", b"2")],
    );
    wait_versions(&client, "/multi/one", 1, LIMIT).await;
    wait_versions(&client, "/multi/two", 1, LIMIT).await;

    // Only the first stager runs during the push; it dies once a blob is stored.
    let mut second = second;
    second.kill9();
    let dir = c.dir.path().join("resume");
    let files: Vec<(String, Vec<u8>)> = (0..6u8)
        .map(|k| (format!("part{k}.bin"), vec![k; 16 << 20]))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    write_bundle(&dir, Some(&manifest_for("/multi/pushed")), &refs);
    let mut env: Vec<(String, String)> = vec![
        ("P2_NATS".into(), c.nats.url()),
        ("P2_USER".into(), "tali".into()),
    ];
    env.extend(
        crate::support::S3_TEST_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let push = std::process::Command::new(crate::support::BIN)
        .args(["push", dir.to_str().unwrap(), "--json", "--timeout", "120"])
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let blobs = c.dir.path().join("source").join("blobs");
    let stored = || walk_count(&blobs);
    let before = stored();
    wait_for(LIMIT, "the first pushed blob to be stored", || async {
        (stored() > before).then_some(())
    })
    .await;
    first.kill9();
    first.spawn();
    let out = tokio::task::spawn_blocking(move || push.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (sent, total) = (
        pushed["sent_bytes"].as_u64().unwrap(),
        pushed["total_bytes"].as_u64().unwrap(),
    );
    // `sent` counts every attempt. The first 16 MiB blob was stored before the kill, so
    // sending everything again would make it at least total + 16 MiB; a resume loses at most
    // the 8 MiB window that was in flight. (Had the whole push gone through before the kill,
    // it is exactly total.)
    assert!(
        sent < total + (16 << 20),
        "the resumed push re-sent everything: {sent} bytes for {total}"
    );
    let restored = c.dir.path().join("resume-restored");
    first.cli_ok(&["get", "/multi/pushed", "--to", restored.to_str().unwrap()]);
    assert_eq!(read_tree(&restored), read_tree(&dir));
}

fn walk_count(dir: &Path) -> usize {
    let Ok(list) = std::fs::read_dir(dir) else {
        return 0;
    };
    list.filter_map(Result::ok)
        .map(|e| {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// A wrong bucket or endpoint stops the stager at start-up with a clear error.
#[test]
fn a_wrong_store_is_an_error_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path());
    let wrong_bucket = s3.url().replace("s3://plotter2", "s3://no-such-bucket");
    let closed = format!(
        "s3://b?endpoint=http://127.0.0.1:{}&region=us-east-1",
        crate::support::free_port()
    );
    for (url, why) in [
        (wrong_bucket.as_str(), "NoSuchBucket"),
        (closed.as_str(), "does not answer"),
    ] {
        let mut env = vec![("P2_STORE", url)];
        env.extend(crate::support::S3_TEST_ENV.iter().copied());
        let home = dir.path().join("home");
        let (ok, _, err) = crate::support::cli_env(
            &[
                "stager",
                "--home",
                home.to_str().unwrap(),
                "--nats",
                "nats://127.0.0.1:1",
            ],
            &env,
        );
        assert!(!ok, "{url}: the stager must not start");
        assert!(
            err.contains(why) && err.contains("Check the endpoint, bucket"),
            "{url}: {err}"
        );
    }
}

/// A bundle that can never go in (its ingest request is larger than the server's
/// `max_payload`) is set aside with its reason within 10 s, and the bundle dropped after it is
/// ingested: one bad bundle does not halt the inbox, now or after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_failing_bundle_is_set_aside_and_the_next_goes_in() {
    let c = Cluster::start(1, Opts::default()).await;
    let home = c.dir.path().join("stager");
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &home, &store);
    let notes = "n".repeat(9 * 1024 * 1024);
    let huge = format!(
        r#"{{"manifest_version": 1, "user": "tali", "meta": {{"address": "/stuck/one", "notes": "{notes}"}}}}"#
    );
    let dropped = std::time::Instant::now();
    drop_bundle(&stager.inbox(), "huge", Some(&huge), &[("a.csv", b"1")]);
    drop_bundle(
        &stager.inbox(),
        "after",
        Some(&manifest_for("/stuck/two")),
        &[("b.csv", b"2")],
    );
    let error_file = stager.inbox().join("rejected").join("huge.error.txt");
    wait_for(
        Duration::from_secs(10),
        "the too-large bundle to be set aside",
        || {
            let there = error_file.exists();
            async move { there.then_some(()) }
        },
    )
    .await;
    eprintln!("set aside {:?} after the drop", dropped.elapsed());
    let why = std::fs::read_to_string(&error_file).unwrap();
    assert!(
        why.contains("max_payload") || why.contains("too large"),
        "{why}"
    );
    assert!(
        stager
            .inbox()
            .join("rejected")
            .join("huge")
            .join("a.csv")
            .exists()
    );
    let client = c.client().await;
    wait_versions(&client, "/stuck/two", 1, LIMIT).await;
    let (ok, out, _) = stager.cli(&["ls", "/stuck"]);
    assert!(ok && !out.contains("one"), "{out}");
    assert!(
        std::fs::read_dir(stager.spool())
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| e.file_name().to_string_lossy().starts_with('.')),
        "the spool still holds an entry"
    );
}

/// A bundle dropped while another is being ingested goes in at once, not at the next rescan
/// (an hour here): the events seen meanwhile are acted on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_during_an_ingest_goes_in_at_once() {
    let c = Cluster::start(1, Opts::default()).await;
    let home = c.dir.path().join("stager");
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let mut stager = Stager::start(&c, &home, &store);
    stager.kill9();
    stager.rescan = 3600.0;
    stager.spawn();
    let client = c.client().await;
    // Wait until it watches: a first bundle goes in by its event alone.
    drop_bundle(
        &stager.inbox(),
        "warm",
        Some(&manifest_for("/during/warm")),
        &[("w", b"w")],
    );
    wait_versions(&client, "/during/warm", 1, LIMIT).await;
    let big: Vec<u8> = (0..96u32 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    drop_bundle(
        &stager.inbox(),
        "big",
        Some(&manifest_for("/during/big")),
        &[("big.bin", &big)],
    );
    drop_bundle(
        &stager.inbox(),
        "small",
        Some(&manifest_for("/during/small")),
        &[("s", b"s")],
    );
    wait_versions(&client, "/during/small", 1, LIMIT).await;
    wait_versions(&client, "/during/big", 1, LIMIT).await;
}

/// A blob that rots in the store is found on read, moved to `quarantine/` and never served;
/// pushing the bundle again stores a good copy, and `get` is byte-identical again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_is_quarantined_and_a_push_heals_it() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::start(1, Opts::default()).await;
    let home = c.dir.path().join("stager");
    let store_dir = c.dir.path().join("source");
    let stager = Stager::start(&c, &home, store_dir.to_str().unwrap());
    let run = c.dir.path().join("run");
    write_bundle(
        &run,
        Some(&manifest_for("/rot/one")),
        &[("data.csv", b"x,y\n1,2\n"), ("keep.txt", b"fine")],
    );
    stager.cli_ok(&["push", run.to_str().unwrap()]);
    let key = plotter2_node::bundle::hash_reader(&b"x,y\n1,2\n"[..])
        .unwrap()
        .0
        .blob_key();
    let stored = store_dir.join(&key);
    std::fs::set_permissions(&stored, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&stored, b"x,y\n1,3\n").unwrap();

    let out = c.dir.path().join("out");
    let (ok, _, err) = stager.cli(&["get", "/rot/one@1", "--to", out.to_str().unwrap()]);
    assert!(!ok, "a corrupt blob was served");
    assert!(
        err.contains("corrupt") && err.contains("quarantine"),
        "{err}"
    );
    assert_eq!(
        err.matches("corrupt").count(),
        1,
        "said more than once: {err}"
    );
    assert!(
        !stored.exists(),
        "the corrupt blob is still served from {key}"
    );
    assert!(store_dir.join("quarantine").join(&key).exists());

    stager.cli_ok(&["push", run.to_str().unwrap()]);
    let again = c.dir.path().join("again");
    stager.cli_ok(&["get", "/rot/one@1", "--to", again.to_str().unwrap()]);
    assert_eq!(read_tree(&again), read_tree(&run));
}
