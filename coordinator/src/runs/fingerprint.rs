//! Run fingerprints: blake3 over a tagged, canonical JSON form of a run's parts.

use plotter2_node::Address;
use plotter2_node::bundle::Hash;
use plotter2_node::protocol::ApiError;
use serde_json::Value;

/// What [`fingerprint`] hashes first: a new form gets a new tag, so no two forms collide.
pub(super) const FINGERPRINT_TAG: &[u8] = b"plotter2 run fingerprint v1\n";

/// A run's fingerprint: blake3 over [`FINGERPRINT_TAG`] and the canonical JSON of its parts.
///
/// Canonical JSON: the parts' `serde_json` value, written with every object's keys sorted by
/// their bytes, no whitespace, and `serde_json`'s one form for each string and number. JSON
/// rather than sorted rmp because the parts (task definitions, params) are JSON values already,
/// and the form then does not depend on field order in Rust structs or on how a map iterates.
pub(super) fn fingerprint(what: &impl serde::Serialize) -> Result<Hash, serde_json::Error> {
    let value = serde_json::to_value(what)?;
    let mut out = FINGERPRINT_TAG.to_vec();
    write_canonical(&value, &mut out)?;
    Ok(Hash::of(&out))
}

pub(super) fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out)?;
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

/// The refusal of a run whose parts cannot be fingerprinted: hashing anything less than all
/// of them could let it reuse an unrelated run's output.
pub(super) fn unfingerprintable(task: &str, node: &Address, e: &serde_json::Error) -> ApiError {
    ApiError::new(
        plotter2_node::protocol::ErrorKind::Internal,
        format!(
            "the run of {task} at {node} is refused: its definition, inputs and params cannot \
             be encoded for its fingerprint ({e}), and without one it could reuse an unrelated \
             run's output"
        ),
    )
}
