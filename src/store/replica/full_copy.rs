//! A full copy of etcd's snapshot into the store (see the parent module's docs): a durable
//! mark, the replicated entries cleared and written again in bounded records, then the
//! snapshot's revision recorded as applied.

use super::{
    APPLIED, COPYING, Class, FEED_MAP, Floor, ReplicaEvent, ReplicaRevision, apply_event, classify,
    feed_number, tx_tree, tx_u64,
};
use crate::store::{Lane, Store, StoreError, TreeId, calls::NEXT_CHANGE, codec};

/// Entries removed or written per record by a full copy, so no record nears the log's limit.
const COPY_CHUNK_OPS: usize = 512;
/// Bytes of values per record of a full copy.
const COPY_CHUNK_BYTES: usize = 4 << 20;

impl Store {
    /// Starts a full copy of etcd's snapshot at `revision`: marks it in progress and removes
    /// every replicated entry, the feed and its map (in several records).
    pub async fn begin_full_copy(&self, revision: u64) -> Result<(), StoreError> {
        self.commit_in(Lane::Copy, |tx| {
            tx.meta.insert(COPYING, revision.to_be_bytes())?;
            tx.meta.remove(APPLIED).map(drop)
        })
        .await?;
        for tree in TreeId::ALL {
            loop {
                let doomed = self.read(|trees| {
                    let mut doomed = Vec::new();
                    for entry in trees.tree(tree).iter().keys() {
                        let key = entry?;
                        if cleared_by_copy(tree, &key) {
                            doomed.push(key.to_vec());
                            if doomed.len() == COPY_CHUNK_OPS {
                                break;
                            }
                        }
                    }
                    Ok(doomed)
                })?;
                if doomed.is_empty() {
                    break;
                }
                self.commit_in(Lane::Copy, |tx| {
                    let tree = tx_tree(tx, tree);
                    doomed.iter().try_for_each(|key| tree.remove(key).map(drop))
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Writes part of a full copy's snapshot: the entries and feed entries that exist, each
    /// under the revision that last wrote it (deletions have no place in a snapshot and are
    /// refused).
    pub async fn copy_page(&self, revisions: &[ReplicaRevision]) -> Result<(), StoreError> {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for revision in revisions {
            for event in &revision.events {
                bytes += match event {
                    ReplicaEvent::Data { value: Some(v), .. } => v.len(),
                    ReplicaEvent::FeedPut { change, .. } => change.len(),
                    _ => return Err(StoreError::Conflict("a deletion in a snapshot".into())),
                };
                chunk.push((revision.revision, event.clone()));
                if chunk.len() == COPY_CHUNK_OPS || bytes >= COPY_CHUNK_BYTES {
                    self.copy_chunk(&std::mem::take(&mut chunk)).await?;
                    bytes = 0;
                }
            }
        }
        self.copy_chunk(&chunk).await
    }

    async fn copy_chunk(&self, chunk: &[(u64, ReplicaEvent)]) -> Result<(), StoreError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.commit_in(Lane::Copy, |tx| {
            if tx.meta.get(COPYING)?.is_none() {
                return Err(StoreError::Conflict("no full copy is under way".into()));
            }
            let mut floor = Floor::default();
            chunk
                .iter()
                .try_for_each(|(revision, event)| apply_event(tx, *revision, event, &mut floor))
        })
        .await
    }

    /// Ends the full copy at `revision`: it is the revision applied from now on. The feed's
    /// floor becomes its first entry, or with no entry, the first number after `revision`.
    pub async fn finish_full_copy(&self, revision: u64) -> Result<(), StoreError> {
        // Only the copy writes the feed meanwhile, and its pages are durable: sled is current.
        let floor = match self.change_bounds()? {
            Some((first, _)) => first,
            None => feed_number(revision + 1, 0),
        };
        self.commit_in(Lane::Copy, |tx| {
            if tx_u64(tx, COPYING)? != Some(revision) {
                return Err(StoreError::Conflict(format!(
                    "no full copy at revision {revision} is under way"
                )));
            }
            tx.meta.insert(NEXT_CHANGE, codec::encode(&floor))?;
            tx.meta.insert(APPLIED, revision.to_be_bytes())?;
            tx.meta.remove(COPYING).map(drop)
        })
        .await
    }
}

/// Whether a full copy removes `key` of `tree` before writing the snapshot.
fn cleared_by_copy(tree: TreeId, key: &[u8]) -> bool {
    match classify(tree, key) {
        Class::Replicated | Class::Feed => true,
        Class::Local | Class::Unknown => tree == TreeId::Meta && key.starts_with(FEED_MAP),
    }
}
