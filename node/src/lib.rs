//! plotter2-node: what every plotter2 process shares.
//!
//! Owns the vocabulary of the system: [`Address`] and its subject mapping, node configuration
//! keys and inheritance ([`nodeconf`]), the bundle [`manifest`], the wire [`protocol`], the
//! request [`client`], the [`home`] layout and [`telemetry`] set-up.
//!
//! Must not touch: raft, storage of the registry, or any role's behaviour. Roles talk to each
//! other only through the types defined here.

pub mod address;
pub mod bundle;
pub mod client;
pub mod home;
pub mod manifest;
pub mod nodeconf;
pub mod protocol;
pub mod store;
pub mod telemetry;

pub use address::{Address, AddressError};
pub use client::{Client, ClientError};
pub use home::{ClusterFile, Home};
