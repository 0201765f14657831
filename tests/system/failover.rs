//! Three coordinators under faults: leader kills, a node left behind a compacted log, and a
//! minority that must refuse writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plotter2_node::protocol::{Op, ReadOp, Reply, RequestId, WriteOp};
use plotter2_node::{Address, Client};

use crate::support::{Cluster, Opts, wait_for};

fn new_op(path: &str) -> Op {
    Op::Write(WriteOp::New {
        addr: Address::parse(path).unwrap(),
        set: vec![],
    })
}

async fn request_log(client: &Client) -> Vec<plotter2_node::protocol::RequestRecord> {
    match client
        .call(Op::Read(ReadOp::Requests {
            after: 0,
            limit: u32::MAX,
        }))
        .await
        .unwrap()
    {
        Reply::Requests(r) => r,
        other => panic!("unexpected reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_five_times_loses_and_duplicates_nothing() {
    let mut c = Cluster::start(
        3,
        Opts {
            write_timeout: Some(2.0),
            ..Default::default()
        },
    )
    .await;
    let acked: Arc<Mutex<Vec<RequestId>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = c.client().await.with_deadline(Duration::from_secs(60));
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = RequestId::new();
                match client
                    .call_with_id(id, new_op(&format!("/load/w{w}/n{k}")))
                    .await
                {
                    Ok(Reply::Written(_)) => acked.lock().unwrap().push(id),
                    other => panic!("writer {w}: write {k} failed: {other:?}"),
                }
                k += 1;
            }
        }));
    }
    let probe = c.client().await.with_deadline(Duration::from_secs(10));
    for round in 0..5 {
        let leader = c.wait_leader(Duration::from_secs(20)).await;
        let acked_before = acked.lock().unwrap().len();
        c.coord(leader).kill9();
        let killed_at = Instant::now();
        probe
            .call(new_op(&format!("/probe/{round}")))
            .await
            .unwrap();
        let took = killed_at.elapsed();
        // Elections time out within 0.5-1 s; a split vote or a CI machine running the whole
        // suite on two cores can take a few rounds, so the bound is for "soon", not a figure.
        assert!(
            took < Duration::from_secs(6),
            "round {round}: a new leader took {took:?} to accept a write"
        );
        c.coord(leader).restart();
        c.wait_leader(Duration::from_secs(20)).await;
        let grew = wait_for(Duration::from_secs(10), "writers to make progress", || {
            let n = acked.lock().unwrap().len();
            async move { (n > acked_before).then_some(n) }
        })
        .await;
        eprintln!(
            "round {round}: new leader accepted a write {took:?} after the kill; {grew} writes acknowledged"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    let statuses = c.wait_converged(Duration::from_secs(30)).await;
    assert_eq!(statuses.len(), 3);
    assert!(
        statuses
            .iter()
            .all(|s| s.state_digest == statuses[0].state_digest),
        "state machines differ: {statuses:#?}"
    );
    let log = request_log(&c.client().await).await;
    let mut count: HashMap<RequestId, usize> = HashMap::new();
    for r in &log {
        *count.entry(r.id).or_default() += 1;
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 20,
        "too few writes to mean anything: {}",
        acked.len()
    );
    for id in acked.iter() {
        assert_eq!(
            count.get(id),
            Some(&1),
            "acknowledged request {id} is in the log {:?} times",
            count.get(id)
        );
    }
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "request log sequence has a gap");
    }
}

/// Leaves node 3 behind a log the others have compacted, brings it back, and checks that it
/// catches up by snapshot, and that restarted after that it replays to the same state.
async fn catch_up_by_snapshot(env: Vec<(String, String)>) -> Cluster {
    let mut c = Cluster::start(
        3,
        Opts {
            snapshot_every: Some(50),
            keep_logs: Some(0),
            env,
            ..Default::default()
        },
    )
    .await;
    let client = c.client().await;
    for i in 0..10 {
        client.call(new_op(&format!("/s/early{i}"))).await.unwrap();
    }
    let behind = c.wait_converged(Duration::from_secs(10)).await[0]
        .applied_index
        .unwrap();
    c.coord(3).kill9();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                client.call(new_op(&format!("/s/t{t}/n{i}"))).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let purged = c
        .wait_status(
            Duration::from_secs(20),
            "the leader to purge its log past node 3",
            |s| {
                // Every live node must have purged: a node that has not yet would hand node 3
                // an older snapshot than the others' purge point.
                let purged: Option<Vec<u64>> = s.iter().map(|s| s.purged_index).collect();
                let p = purged?.into_iter().min()?;
                (s.len() == 2 && p > behind).then_some(p)
            },
        )
        .await;
    c.coord(3).restart();
    let statuses = c.wait_converged(Duration::from_secs(30)).await;
    assert!(
        statuses
            .iter()
            .all(|s| s.state_digest == statuses[0].state_digest),
        "{statuses:#?}"
    );
    // The snapshot metric may be published a moment after the applied index.
    c.wait_status(
        Duration::from_secs(30),
        "node 3 to report the snapshot it installed",
        |s| {
            let node3 = s.iter().find(|s| s.id == 3)?;
            (node3.snapshot_index? >= purged).then_some(())
        },
    )
    .await;
    assert_eq!(request_log(&client).await.len(), 10 + 8 * 40);

    // Restarted, it opens the installed snapshot and replays to the same state.
    let digest = statuses[0].state_digest.clone();
    c.coord(3).restart();
    let again = c.wait_converged(Duration::from_secs(30)).await;
    assert!(
        again.iter().all(|s| s.state_digest == digest),
        "after node 3's restart: {again:#?}"
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_compacted_log_catches_up_by_snapshot() {
    catch_up_by_snapshot(Vec::new()).await;
}

/// With 4 KiB chunks the registry's snapshot takes many; node 3 puts them together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_one_chunk_reaches_a_follower() {
    let chunk = 4096u64;
    let env = vec![(
        plotter2_coordinator::network::SNAPSHOT_CHUNK_ENV.to_owned(),
        chunk.to_string(),
    )];
    let mut c = catch_up_by_snapshot(env).await;
    let log = strip_ansi(&c.coord(3).log_text());
    let received: Vec<(u64, u64)> = log
        .lines()
        .filter(|l| l.contains("snapshot received"))
        .map(|l| (field(l, "bytes="), field(l, "chunks=")))
        .collect();
    let &(bytes, chunks) = received
        .last()
        .unwrap_or_else(|| panic!("node 3 logged no received snapshot:\n{log}"));
    assert!(bytes > 4 * chunk, "the snapshot is only {bytes} bytes");
    assert_eq!(
        chunks,
        bytes.div_ceil(chunk),
        "{bytes} bytes in {chunks} chunks"
    );
}

/// `text` without terminal colour codes (the log may have them).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            // ESC [ parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// The number after `key` in a log line.
fn field(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        + key.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {key} in {line:?}"))
}

/// A follower whose raft log write fails stops at once, having stored (and so acknowledged)
/// nothing from the failed batch on; the other two go on committing; restarted, it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_write_stops_the_node_and_the_others_go_on() {
    let mut c = Cluster::start(
        3,
        Opts {
            write_timeout: Some(2.0),
            ..Default::default()
        },
    )
    .await;
    let client = c.client().await.with_deadline(Duration::from_secs(30));
    for i in 0..10 {
        client.call(new_op(&format!("/f/early{i}"))).await.unwrap();
    }
    let applied = c.wait_converged(Duration::from_secs(10)).await[0]
        .applied_index
        .unwrap();
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let victim = c
        .coords
        .iter()
        .map(|x| x.id)
        .find(|&id| id != leader)
        .unwrap();
    let fail_at = applied + 20;
    c.coord(victim).env = vec![(
        plotter2_coordinator::log_store::FAIL_LOG_WRITE_ENV.to_owned(),
        fail_at.to_string(),
    )];
    c.coord(victim).restart();
    c.wait_converged(Duration::from_secs(20)).await;

    for i in 0..60 {
        client.call(new_op(&format!("/f/mid{i}"))).await.unwrap();
    }
    let status = c.coord(victim).wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "it exited with {status}");
    let log = strip_ansi(&c.coord(victim).log_text());
    assert!(
        log.contains("raft log write failed")
            && log.contains("stopped because writing its raft log"),
        "{log}"
    );
    // Nothing at or after the failed index reached its disk (before, later batches did, and
    // were acknowledged over the hole).
    let stored = plotter2_coordinator::log_store::stored_log_range(
        &c.coord(victim).data_dir().join("raft.redb"),
    )
    .unwrap()
    .expect("it stored entries before the failure");
    assert!(
        *stored.end() < fail_at,
        "it stored entries up to {} though writing {fail_at} failed",
        stored.end()
    );

    for i in 0..20 {
        client.call(new_op(&format!("/f/late{i}"))).await.unwrap();
    }
    let two = c.wait_converged(Duration::from_secs(20)).await;
    assert_eq!(two.len(), 2);
    assert!(
        two.iter()
            .all(|s| s.id != victim && s.state_digest == two[0].state_digest)
    );

    c.coord(victim).env.clear();
    c.coord(victim).restart();
    let all = c.wait_converged(Duration::from_secs(30)).await;
    assert_eq!(all.len(), 3);
    assert!(
        all.iter().all(|s| s.state_digest == all[0].state_digest),
        "{all:#?}"
    );
    assert_eq!(request_log(&client).await.len(), 10 + 60 + 20);
}

/// With appends split into parts of 2 KiB, a follower that comes back behind 200 entries gets
/// them in many consecutive appends, and ends with the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_gets_a_large_append_in_parts() {
    let env = vec![(
        plotter2_coordinator::network::APPEND_PART_ENV.to_owned(),
        "2048".to_owned(),
    )];
    let mut c = Cluster::start(
        3,
        Opts {
            env,
            ..Default::default()
        },
    )
    .await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let behind = c
        .coords
        .iter()
        .map(|x| x.id)
        .find(|&id| id != leader)
        .unwrap();
    c.coord(behind).kill9();
    let client = c.client().await;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                client.call(new_op(&format!("/p/t{t}/n{i}"))).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    c.coord(behind).restart();
    let s = c.wait_converged(Duration::from_secs(30)).await;
    assert_eq!(s.len(), 3);
    assert!(
        s.iter().all(|x| x.state_digest == s[0].state_digest),
        "{s:#?}"
    );
    let leader_log = strip_ansi(&c.coord(leader).log_text());
    let split: Vec<u64> = leader_log
        .lines()
        .filter(|l| {
            l.contains("sending a large append in parts") && l.contains(&format!("target={behind}"))
        })
        .map(|l| field(l, "parts="))
        .collect();
    // How the 200 entries are batched depends on when the follower's first answer comes
    // back (one large append, or a few); split they must be, into many parts in all.
    assert!(
        !split.is_empty() && split.iter().all(|&n| n >= 2) && split.iter().sum::<u64>() > 10,
        "the leader split no large append to node {behind} into many parts: {split:?}"
    );
    assert_eq!(request_log(&client).await.len(), 200);
}

/// The coordinator's peak virtual memory, from /proc.
fn vm_peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmPeak:"))
        .expect("VmPeak in /proc/<pid>/status");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

/// A raw TCP client claims huge frames on the raft port: the coordinator closes the
/// connection without reserving the memory claimed, and goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_frame_header_on_the_raft_port_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = Cluster::start(3, Opts::default()).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let target = c
        .coords
        .iter()
        .map(|x| x.id)
        .find(|&id| id != leader)
        .unwrap();
    let (addr, pid) = {
        let t = c.coord(target);
        (t.raft_addr.clone(), t.pid().unwrap())
    };
    let before = vm_peak_kib(pid);
    // 1 GiB as a vote (kind 2), then 1 MiB as a vote: over every limit, then over a vote's.
    for len in [(1u32 << 30) - 1, 1 << 20] {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut header = len.to_be_bytes().to_vec();
        header.push(2);
        conn.write_all(&header).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("a {len}-byte claim kept the connection open"));
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "it answered a {len}-byte claim: {read:?}"
        );
    }
    let after = vm_peak_kib(pid);
    assert!(
        after < before + 512 * 1024,
        "its peak virtual memory grew from {before} KiB to {after} KiB"
    );
    assert!(crate::support::alive(pid as i32), "the coordinator died");
    let client = c.client().await;
    client.call(new_op("/after-the-claims")).await.unwrap();
    let s = c.wait_converged(Duration::from_secs(10)).await;
    assert_eq!(s.len(), 3);
    assert!(
        s.iter().all(|x| x.state_digest == s[0].state_digest),
        "{s:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_refuses_writes_and_says_why_then_recovers() {
    let mut c = Cluster::start(
        3,
        Opts {
            write_timeout: Some(1.5),
            ..Default::default()
        },
    )
    .await;
    c.cli_ok(&["new", "/before"]);
    let digest = c.wait_converged(Duration::from_secs(10)).await[0]
        .state_digest
        .clone();
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let followers: Vec<u64> = c
        .coords
        .iter()
        .map(|x| x.id)
        .filter(|&id| id != leader)
        .collect();

    // Leader alone: it must notice it lost its majority and refuse with the reason.
    for &f in &followers {
        c.coord(f).pause();
    }
    c.wait_status(
        Duration::from_secs(10),
        "the leader to notice it lost its majority",
        |s| {
            let l = s.iter().find(|s| s.id == leader)?;
            (l.quorum_ack_age_ms? > 2000).then_some(())
        },
    )
    .await;
    let client = c.client().await;
    let (ok, _, err) = c.cli(&["--timeout", "4", "new", "/during"]);
    assert!(!ok, "a write was accepted without a majority");
    assert!(
        err.contains("cannot commit") && err.contains("majority"),
        "{err}"
    );
    let still = client
        .cluster_status(Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        still.iter().find(|s| s.id == leader).unwrap().state_digest,
        digest,
        "registry changed"
    );

    for &f in &followers {
        c.coord(f).resume();
    }
    c.wait_leader(Duration::from_secs(20)).await;
    c.cli_ok(&["new", "/after"]);
    let (ok, _, err) = c.cli(&["show", "/during"]);
    assert!(!ok && err.contains("no node at /during"), "{err}");

    // A follower alone (leader and the other follower paused): nobody can commit.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let alone = c
        .coords
        .iter()
        .map(|x| x.id)
        .find(|&id| id != leader)
        .unwrap();
    let paused: Vec<u64> = c
        .coords
        .iter()
        .map(|x| x.id)
        .filter(|&id| id != alone)
        .collect();
    for &p in &paused {
        c.coord(p).pause();
    }
    let (ok, _, err) = c.cli(&["--timeout", "3", "new", "/during2"]);
    assert!(!ok, "a write was accepted without a majority");
    assert!(err.contains("majority"), "{err}");
    for &p in &paused {
        c.coord(p).resume();
    }
    c.wait_leader(Duration::from_secs(20)).await;
    c.cli_ok(&["new", "/after2"]);
    let s = c.wait_converged(Duration::from_secs(20)).await;
    assert!(s.iter().all(|x| x.state_digest == s[0].state_digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_add_and_remove_a_coordinator() {
    let mut c = Cluster::start(3, Opts::default()).await;
    for i in 0..30 {
        c.cli_ok(&["new", &format!("/m/n{i}")]);
    }
    let (ok, _, err) = c.cli(&["cluster", "add", "9", "not-an-address"]);
    assert!(!ok && err.contains("not-an-address"), "{err}");

    let addr = c.spawn_extra(4);
    let added = c.cli_json(&["cluster", "add", "4", &addr, "--json"]);
    assert_eq!(added["voters"], serde_json::json!([1, 2, 3, 4]), "{added}");
    c.cli_ok(&["new", "/m/after-add"]);
    let s = c.wait_converged(Duration::from_secs(20)).await;
    assert_eq!(s.len(), 4);
    assert!(
        s.iter().all(|x| x.state_digest == s[0].state_digest),
        "{s:#?}"
    );
    let status = c.cli_json(&["cluster", "status", "--json"]);
    let four = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 4)
        .unwrap();
    assert_eq!(four["role"], "follower", "{status}");

    let removed = c.cli_json(&["cluster", "remove", "4", "--json"]);
    assert_eq!(removed["voters"], serde_json::json!([1, 2, 3]), "{removed}");
    c.cli_ok(&["new", "/m/after-remove"]);
}
