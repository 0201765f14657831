//! Ingest from drop to commit on a local store, beside the machine's own reference measured in
//! the same run on the same filesystem, so the ratio holds on a noisy machine:
//!
//! (a) one bundle of 1 GiB in 64 files of 16 MiB, against `dd … conv=fdatasync` of 1 GiB;
//! (b) one bundle of 10,000 files of 4 KiB, against `cp -r` of the same tree then `sync`.
//!
//! "Drop" is the rename of a freshly written folder into the inbox (its data not yet synced,
//! as a writer leaves it); "commit" is the moment the coordinator lists the version. Also
//! reports the stager's peak RSS over (a), and how much data was still unflushed (dirty) at
//! each drop, since the drop's flush is part of what we measure.
//!
//! Run: `cargo bench --bench ingest` (needs `nats-server` on PATH). `P2_BENCH_ROUNDS` sets the
//! rounds per scenario (default 3; the median is reported).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may stop at the first surprise

#[path = "../tests/system/support.rs"]
mod support;

use std::io::Write;
use std::path::Path;
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

fn write_files(dir: &Path, count: usize, size: usize, seed: &mut u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut buf = vec![0u8; size];
    for i in 0..count {
        fill(&mut buf, seed);
        let sub = dir.join(format!("d{:03}", i / 1000));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::File::create(sub.join(format!("f{i:05}.bin")))
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
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "bundle {name} not committed within 10 minutes; see {}",
            stager.home.join("stager.log").display()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn main() {
    let rounds: usize = std::env::var("P2_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cluster = Cluster::start(1, Opts::default()).await;
        let root = cluster.dir.path().to_owned();
        let store = root.join("source");
        let mut stager = Stager::start(&cluster, &root.join("stager"), store.to_str().unwrap());
        let client = cluster.client().await;
        let scratch = root.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let incoming = stager.inbox().join(".incoming");

        // (a) 1 GiB in 64 × 16 MiB.
        let (mut ours_a, mut ref_a) = (Vec::new(), Vec::new());
        let mut rss = 0f64;
        for r in 0..rounds {
            // A fresh stager per round, so its peak RSS is this round's.
            stager.kill9();
            stager.spawn();
            let pid = stager_pid(&stager);
            let staged = incoming.join(format!("big{r}"));
            write_files(&staged, 64, 16 * MIB, &mut seed);
            std::fs::write(staged.join("manifest.json"), manifest_for("/bench/big")).unwrap();
            let t = drop_and_wait(&stager, &client, &staged, &format!("big{r}"), "/bench/big", r + 1).await;
            ours_a.push(t.as_secs_f64());
            rss = rss.max(peak_rss_mib(pid));
            let _ = std::fs::remove_dir_all(store.join("blobs"));
            sync_all();

            eprintln!("  before dd: {:.0} MiB dirty", dirty_mib());
            let out = scratch.join("dd.out");
            let t = Instant::now();
            run(Command::new("dd")
                .args(["if=/dev/zero", "bs=16M", "count=64", "conv=fdatasync", "status=none"])
                .arg(format!("of={}", out.display())));
            ref_a.push(t.elapsed().as_secs_f64());
            std::fs::remove_file(&out).unwrap();
            sync_all();
            eprintln!("  (a) round {r}: ours {:.2}s, dd {:.2}s", ours_a[r], ref_a[r]);
        }

        // (b) 10,000 × 4 KiB.
        let (mut ours_b, mut ref_b) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let staged = incoming.join(format!("small{r}"));
            write_files(&staged, 10_000, 4096, &mut seed);
            std::fs::write(staged.join("manifest.json"), manifest_for("/bench/small")).unwrap();
            let t = drop_and_wait(&stager, &client, &staged, &format!("small{r}"), "/bench/small", r + 1).await;
            ours_b.push(t.as_secs_f64());
            let _ = std::fs::remove_dir_all(store.join("blobs"));
            sync_all();

            let src = scratch.join("tree");
            write_files(&src, 10_000, 4096, &mut seed);
            sync_all();
            let dest = scratch.join("tree-copy");
            let t = Instant::now();
            run(Command::new("cp").arg("-r").arg(&src).arg(&dest));
            sync_all();
            ref_b.push(t.elapsed().as_secs_f64());
            std::fs::remove_dir_all(&src).unwrap();
            std::fs::remove_dir_all(&dest).unwrap();
            sync_all();
            eprintln!("  (b) round {r}: ours {:.2}s, cp -r + sync {:.2}s", ours_b[r], ref_b[r]);
        }

        let gib = 1024.0 * 1024.0 * 1024.0;
        let (oa, ra) = (median(ours_a), median(ref_a));
        let (ob, rb) = (median(ours_b), median(ref_b));
        println!();
        println!("ingest from drop to commit, local store, median of {rounds} round(s)");
        println!(
            "(a) 1 GiB in 64 x 16 MiB:  plotter2 {:>7.0} MB/s   dd conv=fdatasync {:>7.0} MB/s   ratio {:.2}   stager peak RSS {:.0} MiB",
            gib / oa / 1e6,
            gib / ra / 1e6,
            ra / oa,
            rss
        );
        println!(
            "(b) 10,000 x 4 KiB:        plotter2 {:>7.0} files/s  cp -r + sync {:>7.0} files/s  ratio {:.2}",
            10_000.0 / ob,
            10_000.0 / rb,
            rb / ob
        );
    });
}

fn stager_pid(stager: &Stager) -> u32 {
    stager.pid().expect("stager running")
}
