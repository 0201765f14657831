//! Messages between plotter2 processes: every one travels in a versioned [`Envelope`] encoded
//! with rmp-serde's named (map) encoding, so added fields and reordering stay compatible.
//!
//! Subjects: requests go to `p2.api.<verb>` (served by the raft leader only, in one queue
//! group); every coordinator answers `p2.node.status` for `cluster status`.
//!
//! One file per kind of message (the envelope and its codec, ids, the API, runs, views,
//! cluster status, subject names, lineage and explanations); everything is re-exported from here.

mod api;
mod cluster;
mod envelope;
mod events;
mod ids;
mod lineage;
mod rules;
mod runs;
mod status;
mod subjects;
mod views;

pub use api::*;
pub use cluster::*;
pub use envelope::*;
pub use events::*;
pub use ids::*;
pub use lineage::*;
pub use rules::*;
pub use runs::*;
pub use status::*;
pub use subjects::*;
pub use views::*;

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::Value;

    use super::*;
    use crate::Address;

    fn sample() -> ApiRequest {
        ApiRequest {
            id: RequestId::new(),
            user: UserName::parse("tali").unwrap(),
            op: Op::Write(WriteOp::New {
                addr: Address::parse("/sources/tali/lr=0.1").unwrap(),
                set: vec!["model.depth=3".parse().unwrap()],
            }),
        }
    }

    #[test]
    fn roundtrip() {
        let req = sample();
        let bytes = encode(&req).unwrap();
        let back: ApiRequest = decode(&bytes).unwrap();
        assert_eq!(back.id, req.id);
        assert_eq!(back.op, req.op);
        assert_eq!(req.op.subject(), "p2.api.new");
    }

    #[test]
    fn future_version_is_refused_before_the_body() {
        let bytes = rmp_serde::to_vec_named(&Envelope {
            v: 2,
            body: "anything",
        })
        .unwrap();
        let err = decode::<ApiRequest>(&bytes).unwrap_err();
        assert_eq!(err, ProtocolError::Version { got: 2 });
        assert!(err.to_string().contains("version 2"));
    }

    #[test]
    fn garbage_and_bad_fields_are_errors_not_panics() {
        assert!(matches!(
            decode::<ApiRequest>(b"\xc1\xff garbage"),
            Err(ProtocolError::Garbage(_))
        ));
        assert!(matches!(
            decode::<ApiRequest>(b""),
            Err(ProtocolError::Garbage(_))
        ));
        #[derive(Serialize)]
        struct RawNew<'a> {
            id: String,
            user: &'a str,
            op: Value,
        }
        let raw = RawNew {
            id: RequestId::new().to_string(),
            user: "tali",
            op: serde_json::json!({"write": {"verb": "new", "addr": "/a//b"}}),
        };
        let bytes = rmp_serde::to_vec_named(&Envelope {
            v: PROTOCOL_VERSION,
            body: raw,
        })
        .unwrap();
        let err = decode::<ApiRequest>(&bytes).unwrap_err().to_string();
        assert!(err.contains("empty segment"), "{err}");
    }

    #[test]
    fn names_and_ids_validate() {
        assert!(UserName::parse("tali").is_ok());
        assert!(UserName::parse("").is_err());
        assert!(UserName::parse("a b").is_err());
        assert!("nope".parse::<RequestId>().is_err());
    }
}
