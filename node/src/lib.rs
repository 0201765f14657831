//! plotter2-node: what every plotter2 process shares.
//!
//! Owns the vocabulary of the system: [`Address`] and its subject mapping, node configuration
//! keys and inheritance ([`nodeconf`]), the bundle [`manifest`], the wire [`protocol`], the
//! request [`client`], the [`home`] layout, [`telemetry`] set-up, and a bundle on a filesystem
//! ([`tree`]: scan, copy, materialise), and the names that become subjects ([`WorkerName`]).
//!
//! Must not touch: raft, storage of the registry, or any role's behaviour. Roles talk to each
//! other only through the types defined here.

/// Serializes a type as its `Display` text and deserializes it through `FromStr`, so a
/// validated type can only be built from valid text, wherever the text comes from.
#[macro_export]
macro_rules! serde_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod address;
pub mod bundle;
pub mod client;
pub mod glob;
pub mod hints;
pub mod home;
pub mod inputs;
pub mod manifest;
pub mod metrics;
pub mod nodeconf;
pub mod pipeline;
pub mod ports;
pub mod progress;
pub mod protocol;
pub mod reference;
pub mod retry;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod tree;
pub mod worker_name;

pub use address::{Address, AddressError};
pub use client::{Client, ClientError};
pub use home::{ClusterFile, Home};
pub use worker_name::{WorkerName, WorkerNameError};
