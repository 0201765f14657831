//! Bad input gets a clear error, the coordinator keeps serving, and the registry is unchanged.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use bytes::Bytes;
use plotter2_node::nodeconf::{Assignment, ConfigKey};
use plotter2_node::protocol::{
    self, ApiRequest, Envelope, ErrorKind, Op, RequestId, UserName, WriteOp,
};
use plotter2_node::{Address, ClientError};

use crate::support::{BIN, Cluster, Opts};

fn api_error(
    r: Result<plotter2_node::protocol::Reply, ClientError>,
) -> plotter2_node::protocol::ApiError {
    match r {
        Err(ClientError::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A valid request whose address bytes are replaced after encoding.
fn with_raw_address(raw: &[u8]) -> Vec<u8> {
    let placeholder = "P".repeat(raw.len() - 1);
    let req = ApiRequest {
        id: RequestId::new(),
        user: UserName::parse("tali").unwrap(),
        op: Op::Write(WriteOp::New {
            addr: Address::parse(&format!("/{placeholder}")).unwrap(),
            set: vec![],
        }),
    };
    let mut bytes = protocol::encode(&req).unwrap();
    let needle = format!("/{placeholder}");
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap();
    bytes[at..at + raw.len()].copy_from_slice(raw);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let c = Cluster::start(1, Opts::default()).await;
    c.cli_ok(&["new", "/good", "--set", "a=1"]);
    let before = c.wait_converged(Duration::from_secs(5)).await[0].clone();

    // Addresses through the CLI.
    let long = format!("/{}", "x".repeat(129));
    let deep = "/a".repeat(33);
    for (addr, why) in [
        ("/a//b", "empty segment"),
        ("/a/./b", "'.' and '..'"),
        ("/a/..", "'.' and '..'"),
        (long.as_str(), "129 bytes"),
        (deep.as_str(), "33 segments"),
        ("relative", "must start with '/'"),
    ] {
        let (ok, _, err) = c.cli(&["new", addr]);
        assert!(!ok, "{addr} was accepted");
        assert!(err.contains(why), "{addr}: {err}");
    }
    let (ok, _, err) = c.cli(&["set", "/good", "noequals"]);
    assert!(!ok && err.contains("no '='"), "{err}");
    let out = std::process::Command::new(BIN)
        .arg("new")
        .arg(std::ffi::OsStr::from_bytes(b"/a/\xff"))
        .env("P2_NATS", c.nats.url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("utf-8")
    );

    // Over the wire, bypassing client-side checks.
    let client = c.client().await;
    let e = api_error(
        client
            .request_raw("p2.api.new", Bytes::from(with_raw_address(b"/a/\xff\xfe")))
            .await,
    );
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert!(e.message.contains("UTF-8"), "{}", e.message);
    let e = api_error(
        client
            .request_raw("p2.api.new", Bytes::from(with_raw_address(b"/a//b")))
            .await,
    );
    assert!(e.message.contains("empty segment"), "{}", e.message);

    let huge = Assignment {
        key: ConfigKey::parse("blob").unwrap(),
        value: "x".repeat(1024 * 1024 + 10).into(),
    };
    let e = api_error(
        client
            .call(Op::Write(WriteOp::Set {
                addr: Address::parse("/good").unwrap(),
                set: vec![huge],
            }))
            .await,
    );
    assert!(
        e.message.contains("blob") && e.message.contains("limit"),
        "{}",
        e.message
    );

    let valid = protocol::encode(&ApiRequest {
        id: RequestId::new(),
        user: UserName::parse("tali").unwrap(),
        op: Op::Write(WriteOp::New {
            addr: Address::parse("/x").unwrap(),
            set: vec![],
        }),
    })
    .unwrap();
    let e = api_error(
        client
            .request_raw("p2.api.frobnicate", Bytes::from(valid.clone()))
            .await,
    );
    assert!(
        e.message.contains("unknown verb") && e.message.contains("new"),
        "{}",
        e.message
    );
    let e = api_error(client.request_raw("p2.api.set", Bytes::from(valid)).await);
    assert!(e.message.contains("p2.api.new"), "{}", e.message);

    let future = rmp_serde::to_vec_named(&Envelope {
        v: 99,
        body: "from the future",
    })
    .unwrap();
    let e = api_error(client.request_raw("p2.api.new", Bytes::from(future)).await);
    assert_eq!(e.kind, ErrorKind::UnsupportedVersion);
    assert!(e.message.contains("version 99"), "{}", e.message);

    for garbage in [&b""[..], b"\x00\x01\x02garbage", b"\xc1", &[0xffu8; 4096]] {
        let e = api_error(
            client
                .request_raw("p2.api.new", Bytes::copy_from_slice(garbage))
                .await,
        );
        assert_eq!(e.kind, ErrorKind::BadRequest, "{}", e.message);
    }

    // Garbage on the raft port: the connection is dropped, the node keeps serving.
    let raft_addr = c.coords[0].raft_addr.clone();
    for frame in [
        &b"\x00\x00\x00\x05hello"[..],
        b"\x7f\xff\xff\xffxx",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(&raft_addr).unwrap();
        s.write_all(frame).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
    }

    let after = c.wait_converged(Duration::from_secs(5)).await[0].clone();
    assert_eq!(
        before.state_digest, after.state_digest,
        "bad input changed the registry"
    );
    assert_eq!(before.applied_index, after.applied_index);
    // Still serving.
    c.cli_ok(&["new", "/still/serving"]);
    assert_eq!(
        c.cli_json(&["requests", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// A layer whose message already includes its cause does not have the cause printed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_print_each_message_once() {
    use plotter2_node::bundle::{BundlePath, FileEntry, FileIndex, Hash};
    use plotter2_node::manifest::Manifest;

    let c = Cluster::start(1, Opts::default()).await;
    let index = FileIndex::new(vec![FileEntry {
        path: BundlePath::parse("x.csv").unwrap(),
        blob: Hash::of(b"1"),
        size: 1,
        mode: 0o644,
    }])
    .unwrap();
    c.client()
        .await
        .call(Op::Write(WriteOp::Ingest {
            addr: Address::parse("/a").unwrap(),
            bundle: index.id(),
            files: index.files().len() as u64,
            bytes: index.total_bytes(),
            manifest: Box::new(Manifest::from_json(br#"{"manifest_version": 1}"#).unwrap()),
            paths: index.paths_for_rules(),
        }))
        .await
        .unwrap();
    let (ok, _, err) = c.cli(&["get", "/a@7"]);
    assert!(!ok);
    assert_eq!(err.matches("has no version 7").count(), 1, "{err}");
    assert!(err.contains("it has versions 1 to 1"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.csv"), b"1,2\n").unwrap();
    let (ok, _, err) = c.cli(&["push", dir.path().to_str().unwrap(), "/a"]);
    assert!(!ok);
    assert_eq!(err.matches("has no manifest.json").count(), 1, "{err}");
    assert_eq!(err.matches("manifest_version").count(), 1, "{err}");
    assert!(err.contains("pushing"), "the context is kept: {err}");
}
