//! A bundle too large for any one message or raft entry: 200,000 files through the inbox and
//! through `push`, on a nats-server with the stock 1 MB `max_payload`, listed a page at a
//! time and restored byte for byte.
//!
//! A test binary of its own, so it runs after the system tests instead of beside them: it
//! writes and syncs half a million files, which would slow every other test's fsyncs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may stop at the first surprise

#[path = "system/support.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

const DIRS: usize = 200;
const PER_DIR: usize = 1000;
const FILES: usize = DIRS * PER_DIR;

fn content(salt: &str, d: usize, i: usize) -> String {
    format!("{salt} file {i} of folder {d}\n")
}

/// Writes the bundle: a manifest for `addr` and [`FILES`] small files whose content depends
/// on `salt` (so two bundles share no blob).
fn write_many(dir: &Path, addr: &str, salt: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("manifest.json"), manifest_for(addr)).unwrap();
    for d in 0..DIRS {
        let sub = dir.join(format!("d{d:03}"));
        std::fs::create_dir(&sub).unwrap();
        for i in 0..PER_DIR {
            std::fs::write(sub.join(format!("f{i:04}.txt")), content(salt, d, i)).unwrap();
        }
    }
}

/// `dir` holds exactly what [`write_many`] wrote.
fn check_many(dir: &Path, addr: &str, salt: &str) {
    assert_eq!(
        std::fs::read_to_string(dir.join("manifest.json")).unwrap(),
        manifest_for(addr)
    );
    let mut count = 1;
    for d in 0..DIRS {
        let sub = dir.join(format!("d{d:03}"));
        count += std::fs::read_dir(&sub).unwrap().count();
        for i in 0..PER_DIR {
            let path = sub.join(format!("f{i:04}.txt"));
            let got = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(got, content(salt, d, i), "{}", path.display());
        }
    }
    count += std::fs::read_dir(dir).unwrap().count() - DIRS - 1;
    assert_eq!(count, FILES + 1, "files under {}", dir.display());
}

/// Pages through the listing of `reference` with `files --json`, `limit` at a time.
fn list_all(stager: &Stager, reference: &str, limit: usize) -> (Vec<String>, usize) {
    let (mut paths, mut pages, mut after) = (Vec::new(), 0, None::<String>);
    loop {
        let limit = limit.to_string();
        let mut args = vec!["files", reference, "--json", "--limit", &limit];
        if let Some(a) = &after {
            args.extend(["--after", a]);
        }
        let out = stager.cli_ok(&args);
        let page: serde_json::Value = serde_json::from_str(&out).unwrap();
        let files = page["files"].as_array().unwrap();
        assert!(files.len() <= limit.parse().unwrap());
        paths.extend(files.iter().map(|f| f["path"].as_str().unwrap().to_owned()));
        pages += 1;
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), paths.last().map(String::as_str));
                after = Some(next.to_owned());
            }
            None => {
                assert_eq!(page["more"], 0);
                return (paths, pages);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_of_200000_files_goes_in_by_inbox_and_by_push_on_a_stock_1mb_server() {
    let c = Cluster::start(
        1,
        Opts {
            max_payload: Some("1MB"),
            ..Opts::default()
        },
    )
    .await;
    let store = c.dir.path().join("store");
    let stager = Stager::start(&c, &c.dir.path().join("stager"), store.to_str().unwrap());
    let client = c.client().await;
    let addr = "/sources/tali/large";

    // The inbox: a million-line index would be ~100 MB; this one is ~20 MB, far past 1 MB.
    let staging = stager.inbox().join(".incoming").join("big");
    let t = Instant::now();
    write_many(&staging, addr, "inbox");
    eprintln!("writing the bundle: {:?}", t.elapsed());
    let t = Instant::now();
    std::fs::rename(&staging, stager.inbox().join("big")).unwrap();
    let v = wait_versions(&client, addr, 1, Duration::from_secs(600)).await;
    eprintln!("inbox: {} files committed in {:?}", FILES + 1, t.elapsed());
    assert_eq!(v[0]["files"], (FILES + 1) as u64);

    // Listed a page at a time, in path order, every file once.
    let t = Instant::now();
    let (paths, pages) = list_all(&stager, &format!("{addr}@1:d007"), 300);
    assert_eq!(pages, 4);
    assert_eq!(paths.len(), PER_DIR);
    assert!(paths.windows(2).all(|w| w[0] < w[1]), "path order");
    assert_eq!(paths[0], "d007/f0000.txt");
    let text = stager.cli_ok(&["files", &format!("{addr}@1"), "--limit", "3"]);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.contains(&format!("… {} more files", FILES + 1 - 3))
            && text.contains("--after d000/f0002.txt"),
        "{text}"
    );

    let (ok, _, err) = stager.cli(&["files", &format!("{addr}@1:d999")]);
    assert!(
        !ok && err.contains("has no file or folder \"d999\""),
        "{err}"
    );
    eprintln!("listing: {:?}", t.elapsed());
    let out = c.dir.path().join("out-inbox");
    let t = Instant::now();
    stager.cli_ok(&["get", &format!("{addr}@1"), "--to", out.to_str().unwrap()]);
    eprintln!("get: {} files restored in {:?}", FILES + 1, t.elapsed());
    let t = Instant::now();
    check_many(&out, addr, "inbox");
    eprintln!("checking: {:?}", t.elapsed());

    // Push: the index and 200,000 blobs in messages of at most one chunk.
    let src = c.dir.path().join("push-src");
    write_many(&src, addr, "push");
    let t = Instant::now();
    let pushed = stager.cli_ok(&[
        "--timeout",
        "600",
        "push",
        src.to_str().unwrap(),
        addr,
        "--json",
    ]);
    eprintln!("push: {} files committed in {:?}", FILES + 1, t.elapsed());
    let pushed: serde_json::Value = serde_json::from_str(&pushed).unwrap();
    assert_eq!(pushed["bundle"]["version"], 2, "{pushed}");
    assert_eq!(pushed["files"], (FILES + 1) as u64);
    let out = c.dir.path().join("out-push");
    stager.cli_ok(&["get", &format!("{addr}@2"), "--to", out.to_str().unwrap()]);
    check_many(&out, addr, "push");

    // Pushing it again sends nothing but finds it stored.
    let t = Instant::now();
    let again = stager.cli_ok(&["push", src.to_str().unwrap(), addr, "--json"]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["bundle"]["existing"], true, "{again}");
    assert_eq!(again["sent_bytes"], 0, "{again}");
    eprintln!("pushing again: {:?}", t.elapsed());
}
