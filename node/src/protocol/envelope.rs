//! The wire format: the versioned envelope every message travels in, and its codec.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("not a plotter2 message ({0}); send an rmp-serde envelope {{v, body}}")]
    Garbage(String),
    #[error(
        "protocol version {got} is not supported: this plotter2 speaks version {PROTOCOL_VERSION}; upgrade the older side"
    )]
    Version { got: u32 },
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("could not encode message: {0}")]
    Encode(String),
}

/// The wire wrapper: a version and a body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub v: u32,
    pub body: T,
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u32,
}

/// Encodes `body` in an envelope of the current version.
pub fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, ProtocolError> {
    rmp_serde::to_vec_named(&Envelope {
        v: PROTOCOL_VERSION,
        body,
    })
    .map_err(|e| ProtocolError::Encode(e.to_string()))
}

/// Decodes an envelope, refusing other versions before looking at the body.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    let probe: VersionProbe =
        rmp_serde::from_slice(bytes).map_err(|e| ProtocolError::Garbage(e.to_string()))?;
    if probe.v != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { got: probe.v });
    }
    let env: Envelope<T> =
        rmp_serde::from_slice(bytes).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    Ok(env.body)
}
