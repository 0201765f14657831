//! Ingest and push on a local store, beside the machine's own reference measured in the same
//! run on the same filesystem, so the ratio holds on a noisy machine:
//!
//! (a) one bundle of 1 GiB in 64 files of 16 MiB, drop to commit, against `dd … conv=fdatasync`
//!     of 1 GiB;
//! (b) one bundle of 10,000 files of 4 KiB, drop to commit, against `cp -r` of the same tree
//!     then `sync`;
//! (c) one bundle of 200,000 files of 1 KiB, drop to commit, against `cp -r` then `sync`;
//! (d) `plotter2 push` of folders shaped like (a) and (b) over loopback NATS, against
//!     `dvc push` of the same folders to a local DVC remote (skipped, saying so, when `dvc` is
//!     not installed: `pip install dvc`), three ways: the push alone (the folder hashed and
//!     cached beforehand by `dvc add`), the push and the `sync` that makes it durable, and the
//!     whole flow from a fresh folder that our push does (`dvc add`, `dvc push`, `sync`);
//! (e) one bundle of 1,000,000 files of 64 bytes: drop to commit, the first page of
//!     `plotter2 files`, and `plotter2 get` of the whole bundle (no reference; it must work).
//!
//! "Drop" is the rename of a freshly written folder into the inbox (its data not yet synced,
//! as a writer leaves it); "commit" is the moment the coordinator lists the version. Also
//! reports the stager's peak RSS in each scenario (a fresh stager per scenario), and how much
//! data was still unflushed (dirty) at each drop, since the drop's flush is part of what we
//! measure.
//!
//! Run: `cargo bench --bench ingest` (needs `nats-server` on PATH). `P2_BENCH_ROUNDS` sets the
//! rounds per scenario (default 3; the median is reported); `P2_BENCH_ONLY=c,d` runs only
//! those scenarios.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may stop at the first surprise

#[path = "../tests/system/support.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Cluster, Opts, Stager, bundles_of, manifest_for};

const MIB: usize = 1024 * 1024;

/// Fills `buf` with fast pseudo-random bytes (content must differ per round: blobs that exist
/// are skipped, which would flatter us).
fn fill(buf: &mut [u8], seed: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let b = seed.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// `count` files of `size` random bytes under `dir`, 1000 to a folder.
fn write_files(dir: &Path, count: usize, size: usize, seed: &mut u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut buf = vec![0u8; size];
    for i in 0..count {
        fill(&mut buf, seed);
        let sub = dir.join(format!("d{:04}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        std::fs::File::create(sub.join(format!("f{i:07}.bin")))
            .unwrap()
            .write_all(&buf)
            .unwrap();
    }
}

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap();
    assert!(st.success(), "{cmd:?} failed");
}

fn sync_all() {
    run(&mut Command::new("sync"));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Data written but not yet on disk, machine-wide (`Dirty:` in /proc/meminfo), in MiB: how
/// much of a fresh bundle the drop still has to flush.
fn dirty_mib() -> f64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find(|l| l.starts_with("Dirty:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn remove(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}

/// Drops the bundle at `staged` into the inbox as `name` and waits for version `n` at `addr`.
async fn drop_and_wait(
    stager: &Stager,
    client: &plotter2_node::Client,
    staged: &Path,
    name: &str,
    addr: &str,
    n: usize,
) -> Duration {
    eprintln!("  dropping {name}: {:.0} MiB dirty", dirty_mib());
    let start = Instant::now();
    std::fs::rename(staged, stager.inbox().join(name)).unwrap();
    loop {
        if bundles_of(client, addr).await.len() >= n {
            let took = start.elapsed();
            // Where the time went, as the stager logged it.
            let log = std::fs::read_to_string(stager.home.join("stager.log")).unwrap_or_default();
            if let Some(line) = log.lines().rev().find(|l| l.contains("ingest took")) {
                let steps = line.split("steps=").nth(1).unwrap_or(line);
                eprintln!("  {name}: {steps}");
            }
            return took;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "bundle {name} not committed within 30 minutes; see {}",
            stager.home.join("stager.log").display()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `cp -r` of a tree of `count` × `size` then `sync`, the seconds it took.
fn cp_reference(scratch: &Path, count: usize, size: usize, seed: &mut u64) -> f64 {
    let src = scratch.join("tree");
    write_files(&src, count, size, seed);
    sync_all();
    let dest = scratch.join("tree-copy");
    let t = Instant::now();
    run(Command::new("cp").arg("-r").arg(&src).arg(&dest));
    sync_all();
    let took = t.elapsed().as_secs_f64();
    remove(&src);
    remove(&dest);
    sync_all();
    took
}

struct Bench {
    cluster: Cluster,
    stager: Stager,
    client: plotter2_node::Client,
    store: PathBuf,
    scratch: PathBuf,
    rounds: usize,
    seed: u64,
}

impl Bench {
    fn incoming(&self) -> PathBuf {
        self.stager.inbox().join(".incoming")
    }

    /// A fresh stager, so its peak RSS is the next scenario's.
    fn fresh_stager(&mut self) -> u32 {
        self.stager.kill9();
        self.stager.spawn();
        self.stager.pid().expect("stager running")
    }

    /// Scenario (a), (b) or (c): `count` × `size` dropped `rounds` times, each beside the
    /// reference `reference` (seconds); returns (ours, reference, stager peak RSS).
    async fn drops(
        &mut self,
        name: &str,
        count: usize,
        size: usize,
        reference: impl Fn(&Path, &mut u64) -> f64,
    ) -> (f64, f64, f64) {
        let pid = self.fresh_stager();
        let addr = format!("/bench/{name}");
        let (mut ours, mut refs) = (Vec::new(), Vec::new());
        for r in 0..self.rounds {
            let staged = self.incoming().join(format!("{name}{r}"));
            write_files(&staged, count, size, &mut self.seed);
            std::fs::write(staged.join("manifest.json"), manifest_for(&addr)).unwrap();
            let t = drop_and_wait(
                &self.stager,
                &self.client,
                &staged,
                &format!("{name}{r}"),
                &addr,
                r + 1,
            )
            .await;
            ours.push(t.as_secs_f64());
            remove(&self.store.join("blobs"));
            sync_all();
            refs.push(reference(&self.scratch, &mut self.seed));
            eprintln!(
                "  ({name}) round {r}: ours {:.2}s, reference {:.2}s",
                ours[r], refs[r]
            );
        }
        (median(ours), median(refs), peak_rss_mib(pid))
    }

    /// Scenario (d) for one shape: our push and dvc's (None when dvc is missing) of a fresh
    /// folder each round; returns the median of ours and the medians of dvc's parts.
    fn pushes(&mut self, name: &str, count: usize, size: usize) -> (f64, Option<DvcTimes>) {
        let addr = format!("/bench/push-{name}");
        let dvc = dvc_available();
        let (mut ours, mut refs) = (Vec::new(), Vec::new());
        for r in 0..self.rounds {
            let src = self.scratch.join(format!("push-{name}{r}"));
            write_files(&src, count, size, &mut self.seed);
            std::fs::write(src.join("manifest.json"), manifest_for(&addr)).unwrap();
            sync_all();
            let t = Instant::now();
            self.stager
                .cli_ok(&["--timeout", "1800", "push", src.to_str().unwrap(), &addr]);
            ours.push(t.elapsed().as_secs_f64());
            remove(&src);
            remove(&self.store.join("blobs"));
            sync_all();
            if dvc {
                refs.push(dvc_push(&self.scratch, count, size, &mut self.seed));
            }
            eprintln!(
                "  (d {name}) round {r}: plotter2 push {:.2}s, dvc push {}",
                ours[r],
                refs.get(r).map_or("-".into(), |s: &DvcTimes| format!(
                    "{:.2}s, dvc add + push + sync {:.2}s",
                    s.push, s.add_push_sync
                ))
            );
        }
        let dvc = (!refs.is_empty()).then(|| DvcTimes {
            push: median(refs.iter().map(|r| r.push).collect()),
            push_sync: median(refs.iter().map(|r| r.push_sync).collect()),
            add_push_sync: median(refs.iter().map(|r| r.add_push_sync).collect()),
        });
        (median(ours), dvc)
    }
}

fn dvc_available() -> bool {
    Command::new("dvc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What dvc took to send a fresh folder of `count` × `size` to a local remote.
#[derive(Clone, Copy)]
struct DvcTimes {
    /// `dvc push` alone: the folder already hashed and cached by `dvc add`.
    push: f64,
    /// `dvc push` and the `sync` that puts what it copied on disk (our answer includes that).
    push_sync: f64,
    /// The whole flow from a fresh folder, as our push does it: `dvc add` (hash, cache),
    /// `dvc push`, `sync`.
    add_push_sync: f64,
}

/// `dvc add` then `dvc push` of a fresh folder of `count` × `size` to a local remote, timed in
/// its parts (see [`DvcTimes`]).
fn dvc_push(scratch: &Path, count: usize, size: usize, seed: &mut u64) -> DvcTimes {
    let repo = scratch.join("dvc-repo");
    let remote = scratch.join("dvc-remote");
    remove(&repo);
    remove(&remote);
    write_files(&repo.join("data"), count, size, seed);
    let dvc = |args: &[&str]| {
        run(Command::new("dvc")
            .args(args)
            .current_dir(&repo)
            .env("DVC_NO_ANALYTICS", "1"));
    };
    dvc(&["init", "--no-scm", "-q"]);
    dvc(&["remote", "add", "-d", "local", remote.to_str().unwrap()]);
    sync_all();
    let a = Instant::now();
    dvc(&["add", "-q", "data"]);
    let added = a.elapsed().as_secs_f64();
    // What `dvc add` copied into its cache is flushed outside either clock, so the push's
    // figure is its own.
    sync_all();
    let t = Instant::now();
    dvc(&["push", "-q"]);
    let pushed = t.elapsed().as_secs_f64();
    // dvc does not fsync what it copies: what it left dirty, and the time to make it durable
    // (which our push's answer includes).
    let dirty = dirty_mib();
    sync_all();
    let durable = t.elapsed().as_secs_f64();
    eprintln!(
        "    dvc add {added:.2}s; dvc push {pushed:.2}s left {dirty:.0} MiB dirty; with sync {durable:.2}s"
    );
    remove(&repo);
    remove(&remote);
    sync_all();
    DvcTimes {
        push: pushed,
        push_sync: durable,
        add_push_sync: added + durable,
    }
}

fn wanted(only: &Option<String>, scenario: &str) -> bool {
    only.as_ref()
        .is_none_or(|o| o.split(',').any(|s| s.trim() == scenario))
}

fn main() {
    let rounds: usize = std::env::var("P2_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let only = std::env::var("P2_BENCH_ONLY").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cluster = Cluster::start(1, Opts::default()).await;
        let root = cluster.dir.path().to_owned();
        let store = root.join("source");
        let stager = Stager::start(&cluster, &root.join("stager"), store.to_str().unwrap());
        let client = cluster.client().await;
        let scratch = root.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let mut b = Bench {
            cluster,
            stager,
            client,
            store,
            scratch,
            rounds,
            seed: 0x9E37_79B9_7F4A_7C15,
        };
        let gib = 1024.0 * 1024.0 * 1024.0;
        let mut lines = Vec::new();

        if wanted(&only, "a") {
            let (o, r, rss) = b
                .drops("a", 64, 16 * MIB, |scratch, _| {
                    eprintln!("  before dd: {:.0} MiB dirty", dirty_mib());
                    let out = scratch.join("dd.out");
                    let t = Instant::now();
                    run(Command::new("dd")
                        .args(["if=/dev/zero", "bs=16M", "count=64", "conv=fdatasync", "status=none"])
                        .arg(format!("of={}", out.display())));
                    let took = t.elapsed().as_secs_f64();
                    std::fs::remove_file(&out).unwrap();
                    sync_all();
                    took
                })
                .await;
            lines.push(format!(
                "(a) 1 GiB in 64 x 16 MiB:  plotter2 {:>7.0} MB/s   dd conv=fdatasync {:>7.0} MB/s   ratio {:.2}   stager peak RSS {rss:.0} MiB",
                gib / o / 1e6,
                gib / r / 1e6,
                r / o
            ));
        }
        if wanted(&only, "b") {
            let (o, r, rss) = b
                .drops("b", 10_000, 4096, |s, seed| cp_reference(s, 10_000, 4096, seed))
                .await;
            lines.push(format!(
                "(b) 10,000 x 4 KiB:        plotter2 {:>7.0} files/s  cp -r + sync {:>7.0} files/s  ratio {:.2}   stager peak RSS {rss:.0} MiB",
                10_000.0 / o,
                10_000.0 / r,
                r / o
            ));
        }
        if wanted(&only, "c") {
            let (o, r, rss) = b
                .drops("c", 200_000, 1024, |s, seed| cp_reference(s, 200_000, 1024, seed))
                .await;
            lines.push(format!(
                "(c) 200,000 x 1 KiB:       plotter2 {:>7.0} files/s  cp -r + sync {:>7.0} files/s  ratio {:.2}   stager peak RSS {rss:.0} MiB",
                200_000.0 / o,
                200_000.0 / r,
                r / o
            ));
        }
        if wanted(&only, "d") {
            let pid = b.fresh_stager();
            for (name, count, size, unit) in [
                ("1GiB", 64, 16 * MIB, "MB/s"),
                ("10k", 10_000, 4096, "files/s"),
            ] {
                let (o, d) = b.pushes(name, count, size);
                let rate = |s: f64| {
                    if unit == "MB/s" {
                        (count * size) as f64 / s / 1e6
                    } else {
                        count as f64 / s
                    }
                };
                let reference = match d {
                    Some(d) => format!(
                        "dvc push {:>7.0} {unit} (ratio {:.2}); push + sync {:>7.0} {unit} (ratio {:.2}); add + push + sync {:>7.0} {unit} (ratio {:.2})",
                        rate(d.push),
                        d.push / o,
                        rate(d.push_sync),
                        d.push_sync / o,
                        rate(d.add_push_sync),
                        d.add_push_sync / o
                    ),
                    None => "dvc push: not installed (pip install dvc)".to_owned(),
                };
                lines.push(format!(
                    "(d) push {name:<5} {count:>6} x {:>5} KiB: plotter2 push {:>7.0} {unit}   {reference}",
                    size / 1024,
                    rate(o)
                ));
            }
            lines.push(format!(
                "    stager peak RSS over (d): {:.0} MiB",
                peak_rss_mib(pid)
            ));
        }
        if wanted(&only, "e") {
            let pid = b.fresh_stager();
            let addr = "/bench/million";
            let staged = b.incoming().join("million");
            write_files(&staged, 1_000_000, 64, &mut b.seed);
            std::fs::write(staged.join("manifest.json"), manifest_for(addr)).unwrap();
            let t = drop_and_wait(&b.stager, &b.client, &staged, "million", addr, 1).await;
            let rss = peak_rss_mib(pid);
            let l = Instant::now();
            let page = b.stager.cli_ok(&["files", &format!("{addr}@1"), "--limit", "1000"]);
            let list = l.elapsed();
            assert_eq!(page.lines().count(), 1001, "a page and the line saying what is left");
            let out = b.scratch.join("million-out");
            let g = Instant::now();
            b.stager
                .cli_ok(&["get", &format!("{addr}@1"), "--to", out.to_str().unwrap()]);
            let get = g.elapsed();
            let restored = walk_files(&out);
            assert_eq!(restored, 1_000_001, "files restored");
            remove(&out);
            lines.push(format!(
                "(e) 1,000,000 x 64 B: drop to commit {:.1}s ({:.0} files/s), first page of `files` {:.2}s, get {:.1}s ({:.0} files/s)   stager peak RSS {rss:.0} MiB",
                t.as_secs_f64(),
                1e6 / t.as_secs_f64(),
                list.as_secs_f64(),
                get.as_secs_f64(),
                1e6 / get.as_secs_f64()
            ));
        }

        println!();
        println!("ingest and push, local store, median of {rounds} round(s)");
        for l in lines {
            println!("{l}");
        }
        drop(b.cluster);
    });
}

fn walk_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}
