//! Reaching the cluster from the binary: which NATS and store to use (flags, the
//! environment, or what `plotter2 up` recorded in the home), who the user is, and the
//! connected client and opened store.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use plotter2_node::protocol::UserName;
use plotter2_node::store::BlobStore;
use plotter2_node::{Client, ClusterFile, Home};

use crate::cli::Global;

/// `--nats`/`$P2_NATS`, else the URL `plotter2 up` wrote into the home.
pub fn nats_url(flag: Option<String>, home: &Home) -> Result<String> {
    if let Some(url) = flag.filter(|u| !u.is_empty()) {
        return Ok(url);
    }
    match ClusterFile::load(&home.cluster_file())? {
        Some(cf) => Ok(cf.nats_url),
        None => bail!(
            "no cluster to talk to: {} does not exist. Start one with `plotter2 up --home {}`, \
             or pass --nats URL / set P2_NATS",
            home.cluster_file().display(),
            home.root().display()
        ),
    }
}

/// `--user`/`$P2_USER`, else the OS user.
fn user_name(flag: Option<String>) -> Result<UserName> {
    let name = match flag.filter(|u| !u.is_empty()) {
        Some(u) => u,
        None => os_user().context("cannot tell who you are: pass --user NAME or set P2_USER")?,
    };
    UserName::parse(&name).map_err(|e| anyhow::anyhow!("{e}; pass --user NAME or set P2_USER"))
}

fn os_user() -> Option<String> {
    for var in ["USER", "LOGNAME"] {
        if let Some(u) = std::env::var(var).ok().filter(|u| !u.is_empty()) {
            return Some(u);
        }
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy out at once.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_owned)
    }
}

/// A client of the cluster for `global`'s NATS URL, user and timeout.
pub async fn connect(global: &Global) -> Result<Client> {
    let home = Home::resolve(global.home.clone())?;
    let url = nats_url(global.nats.clone(), &home)?;
    let user = user_name(global.user.clone())?;
    if !(global.timeout.is_finite() && global.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    Ok(Client::connect(&url, user)
        .await?
        .with_deadline(Duration::from_secs_f64(global.timeout))
        .with_trace_report(global.verbose))
}

/// `--store`/`$P2_STORE`, else the store `plotter2 up` recorded, else `<home>/source`.
pub fn store_url(global: &Global, home: &Home) -> Result<String> {
    if let Some(url) = global.store.clone().filter(|u| !u.is_empty()) {
        return Ok(url);
    }
    if let Some(url) = ClusterFile::load(&home.cluster_file())?.and_then(|c| c.store) {
        return Ok(url);
    }
    Ok(home.source().to_string_lossy().into_owned())
}

/// Opens the object store and checks that it answers.
pub async fn open_store(global: &Global, home: &Home) -> Result<BlobStore> {
    let url = store_url(global, home)?;
    let store = tokio::task::spawn_blocking(move || BlobStore::open(&url)).await??;
    store.check().await?;
    Ok(store)
}
