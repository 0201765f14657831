//! The stager's end of a push: answers `open` and `commit`, and stores data messages.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::Instrument;

use async_nats::Subject;
use futures::StreamExt;
use plotter2_node::client::{Client, ClientError};
use plotter2_node::manifest::Manifest;
use plotter2_node::protocol::{self, ApiError, Op, Reply, WriteOp};
use plotter2_node::store::{BlobStore, StoreError};
use plotter2_node::tree::{self, MANIFEST};
use tokio::sync::mpsc;

use super::*;
use crate::StagerError;

/// Serves `open`, `commit` and this stager's data messages until the task is aborted.
pub async fn serve(client: Client, name: String, store: BlobStore, parts: PathBuf) {
    if let Err(e) = serve_inner(client, name, store, parts).await {
        tracing::error!(error = %e, "push receiver stopped");
    }
}

async fn serve_inner(
    client: Client,
    name: String,
    store: BlobStore,
    parts: PathBuf,
) -> Result<(), StagerError> {
    tokio::fs::create_dir_all(&parts)
        .await
        .map_err(StagerError::io(&parts))?;
    let nats = client.nats().clone();
    let nats_err = |subject: &str| {
        let subject = subject.to_owned();
        move |source| PushError::Subscribe { subject, source }
    };
    let mut opens = nats
        .queue_subscribe(OPEN_SUBJECT, QUEUE.into())
        .await
        .map_err(nats_err(OPEN_SUBJECT))?;
    let mut commits = nats
        .queue_subscribe(COMMIT_SUBJECT, QUEUE.into())
        .await
        .map_err(nats_err(COMMIT_SUBJECT))?;
    let subject = data_subject(&name);
    let mut data = nats
        .subscribe(subject.clone())
        .await
        .map_err(nats_err(&subject))?;
    let receiver = Arc::new(Receiver {
        name,
        store,
        parts,
        client,
    });
    // Each lane stores its messages one at a time, in arrival order (a blob's chunks arrive
    // in the order they were published); lanes run side by side. The bounded channels push
    // back on the subscription when the disk is slower than the network. What a message
    // completes is acknowledged by the syncer once it is durable.
    let syncer = {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(sync_then_ack(receiver.clone(), rx));
        tx
    };
    let lanes: Vec<mpsc::Sender<(Data, Subject)>> = (0..LANES)
        .map(|_| {
            let (tx, mut rx) = mpsc::channel::<(Data, Subject)>(WINDOW);
            let r = receiver.clone();
            let syncer = syncer.clone();
            tokio::spawn(async move {
                while let Some((data, reply)) = rx.recv().await {
                    match r.store_data(data).await {
                        Ok(ack) if ack.stored => {
                            if let Err(mpsc::error::SendError((reply, ack))) =
                                syncer.send((reply, ack))
                            {
                                let lost: Answer<DataAck> =
                                    Err(internal(format!("the stager is stopping ({})", ack.seq)));
                                r.reply(reply, &lost).await;
                            }
                        }
                        answer => r.reply(reply, &answer).await,
                    }
                }
            });
            tx
        })
        .collect();
    loop {
        tokio::select! {
            Some(msg) = opens.next() => {
                let r = receiver.clone();
                let span = tracing::info_span!("push_open");
                plotter2_node::telemetry::adopt_context(&span, msg.headers.as_ref());
                tokio::spawn(async move {
                    if let Some(reply) = msg.reply.clone() {
                        let answer = r.open(&msg.payload).await;
                        r.reply(reply, &answer).await;
                    }
                }.instrument(span));
            }
            Some(msg) = commits.next() => {
                let r = receiver.clone();
                let span = tracing::info_span!("push_ingest");
                plotter2_node::telemetry::adopt_context(&span, msg.headers.as_ref());
                tokio::spawn(async move {
                    if let Some(reply) = msg.reply.clone() {
                        let answer = r.commit(&msg.payload).await;
                        r.reply(reply, &answer).await;
                    }
                }.instrument(span));
            }
            Some(msg) = data.next() => {
                let Some(reply) = msg.reply.clone() else { continue };
                match protocol::decode::<Data>(&msg.payload) {
                    Ok(d) => {
                        let lane = match &d {
                            Data::Pack { seq, .. } => (*seq % LANES as u64) as usize,
                            Data::Chunk { blob, .. } => blob.as_bytes()[0] as usize % LANES,
                        };
                        if lanes[lane].send((d, reply)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        let answer: Answer<DataAck> = Err(e.into());
                        receiver.reply(reply, &answer).await;
                    }
                }
            }
            else => return Ok(()),
        }
    }
}

/// Acknowledges what the lanes stored once it is durable: one `syncfs` covers everything
/// queued before it started, so while one runs, the lanes go on writing, and the next covers
/// all that arrived meanwhile (a sync per batch of blobs, not one per blob).
async fn sync_then_ack(r: Arc<Receiver>, mut rx: mpsc::UnboundedReceiver<(Subject, DataAck)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let synced = r.store.sync().await;
        for (reply, ack) in batch {
            let answer = match &synced {
                Ok(()) => Ok(ack),
                Err(e) => Err(internal(e.to_string())),
            };
            r.reply(reply, &answer).await;
        }
    }
}

struct Receiver {
    name: String,
    store: BlobStore,
    parts: PathBuf,
    client: Client,
}

impl Receiver {
    async fn reply<T: Serialize>(&self, to: Subject, answer: &Answer<T>) {
        if let Err(e) = self.client.nats().publish(to, encode(answer)).await {
            tracing::warn!(error = %e, "could not answer a pusher");
        }
    }

    fn part_path(&self, blob: &Hash) -> PathBuf {
        self.parts.join(format!("{}.part", blob.hex()))
    }

    /// Bytes of `blob` this stager holds as a part (0 when none).
    fn part_len(&self, blob: &Hash) -> u64 {
        std::fs::metadata(self.part_path(blob)).map_or(0, |m| m.len())
    }

    async fn open(self: &Arc<Self>, body: &[u8]) -> Answer<Opened> {
        let open: Open = protocol::decode(body)?;
        if !self.store.has_blob(&open.bundle).await.map_err(store_err)? {
            let (me, bundle) = (self.clone(), open.bundle);
            let from = tokio::task::spawn_blocking(move || me.part_len(&bundle))
                .await
                .map_err(|e| internal(e.to_string()))?;
            return Ok(Opened {
                stager: self.name.clone(),
                index_from: Some(from),
                need: Vec::new(),
                partial: Vec::new(),
            });
        }
        let index = self
            .store
            .get_index(&open.bundle)
            .await
            .map_err(store_err)?;
        let blobs = distinct_blobs(&index);
        drop(index);
        let hashes: Vec<Hash> = blobs.iter().map(|b| b.0).collect();
        let has = self.store.has_blobs(&hashes).await.map_err(store_err)?;
        let me = self.clone();
        let (need, partial) = tokio::task::spawn_blocking(move || {
            let mut need = vec![0u8; hashes.len().div_ceil(8)];
            let mut partial = Vec::new();
            for (i, (h, there)) in hashes.iter().zip(has).enumerate() {
                if there {
                    continue;
                }
                need[i / 8] |= 1 << (i % 8);
                let from = me.part_len(h);
                if from > 0 {
                    partial.push((u32::try_from(i).unwrap_or(u32::MAX), from));
                }
            }
            (need, partial)
        })
        .await
        .map_err(|e| internal(e.to_string()))?;
        Ok(Opened {
            stager: self.name.clone(),
            index_from: None,
            need,
            partial,
        })
    }

    async fn store_data(&self, data: Data) -> Answer<DataAck> {
        match data {
            Data::Pack { seq, blobs } => {
                let blobs = blobs
                    .into_iter()
                    .map(|p| (p.blob, Bytes::from(p.data)))
                    .collect();
                self.store.put_blobs(blobs).await.map_err(refuse_mismatch)?;
                Ok(DataAck {
                    seq,
                    next: 0,
                    stored: true,
                })
            }
            Data::Chunk {
                seq,
                blob,
                size,
                offset,
                data,
            } => self.chunk(seq, blob, size, offset, data).await,
        }
    }

    async fn chunk(
        &self,
        seq: u64,
        blob: Hash,
        size: u64,
        offset: u64,
        data: Vec<u8>,
    ) -> Answer<DataAck> {
        let path = self.part_path(&blob);
        let end = offset + data.len() as u64;
        if end > size {
            return Err(ApiError::bad_request(format!(
                "chunk of {blob} ends at {end}, past its size {size}"
            )));
        }
        let written = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)?;
                let have = f.metadata()?.len();
                if have != offset {
                    return Ok(have);
                }
                f.write_all_at(&data, offset)?;
                Ok(end)
            })
            .await
        };
        let next = match written {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(internal(format!("{}: {e}", path.display()))),
            Err(e) => return Err(internal(e.to_string())),
        };
        if next != end || end != size {
            return Ok(DataAck {
                seq,
                next,
                stored: false,
            });
        }
        // The blob is complete: the store verifies it as it takes it (by hard link; the
        // syncer makes it durable before the acknowledgement); the part goes.
        self.store
            .put_file(&blob, &path, size, true)
            .await
            .map_err(refuse_mismatch)?;
        let _ = tokio::fs::remove_file(&path).await;
        Ok(DataAck {
            seq,
            next: size,
            stored: true,
        })
    }

    async fn commit(&self, body: &[u8]) -> Answer<Pushed> {
        let c: Commit = protocol::decode(body)?;
        // What this push sent is durable already; a blob an earlier push left half done
        // (linked, then the stager killed before its sync) becomes so here.
        self.store.sync().await.map_err(store_err)?;
        let index = match self.store.get_index(&c.bundle).await {
            Ok(index) => index,
            Err(StoreError::Missing { .. }) => {
                return Err(ApiError::bad_request(format!(
                    "the file index of {} is not in the store; push again to send it",
                    c.bundle
                )));
            }
            Err(e) => return Err(store_err(e)),
        };
        let (files, total_bytes) = (index.files().len() as u64, index.total_bytes());
        let paths = index.paths_for_rules();
        let Some(manifest_blob) = index.get(MANIFEST).map(|e| e.blob) else {
            return Err(ApiError::bad_request(
                tree::Rejection::NoManifest.to_string(),
            ));
        };
        let hashes: Vec<Hash> = distinct_blobs(&index).into_iter().map(|b| b.0).collect();
        drop(index);
        let has = self.store.has_blobs(&hashes).await.map_err(store_err)?;
        let mut missing = hashes.iter().zip(&has).filter(|(_, there)| !**there);
        if let Some((first, _)) = missing.next() {
            return Err(ApiError::bad_request(format!(
                "{} blob(s) of the bundle are not in the store (first: {first}); push again to send them",
                missing.count() + 1
            )));
        }
        let bytes = self
            .store
            .get_blob(&manifest_blob)
            .await
            .map_err(store_err)?;
        let manifest =
            Manifest::from_json(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let addr = match (c.addr.as_ref(), &manifest.meta.address) {
            (Some(a), _) | (None, Some(a)) => a.clone(),
            (None, None) => {
                return Err(ApiError::bad_request(
                    tree::Rejection::NoAddress.to_string(),
                ));
            }
        };
        let as_user = Client::with_nats(self.client.nats().clone(), c.user);
        let op = Op::Write(WriteOp::Ingest {
            addr: addr.clone(),
            bundle: c.bundle,
            files,
            bytes: total_bytes,
            manifest: Box::new(manifest),
            paths,
        });
        let committed = as_user.call_with_id(c.id, op).await;
        match &committed {
            Ok(Reply::Written(_)) => crate::metrics::committed("push", files, total_bytes, None),
            Err(plotter2_node::ClientError::Api(e)) if !e.kind.retryable() => {
                crate::metrics::rejected("push");
            }
            _ => {}
        }
        match committed {
            Ok(Reply::Written(r)) => match r.bundle {
                Some(bundle) => Ok(Pushed {
                    address: addr,
                    bundle,
                    sent_bytes: 0,
                    total_bytes,
                    files,
                }),
                None => Err(internal("the coordinator's answer has no bundle version")),
            },
            Ok(other) => Err(internal(format!("unexpected answer to ingest: {other:?}"))),
            Err(ClientError::Api(e)) => Err(e),
            Err(e) => Err(ApiError::new(protocol::ErrorKind::NoQuorum, e.to_string())),
        }
    }
}

/// A store failure on the stager's side: the pusher retries.
fn store_err(e: StoreError) -> ApiError {
    internal(e.to_string())
}

/// Bytes that do not hash to what they were sent as are the pusher's to fix; anything else
/// the store says is the stager's side.
fn refuse_mismatch(e: StoreError) -> ApiError {
    match e {
        StoreError::Mismatch { key, got, .. } => ApiError::bad_request(format!(
            "the bytes sent for {key} hash to {got}; the file changed while it was pushed — push again"
        )),
        e => store_err(e),
    }
}
