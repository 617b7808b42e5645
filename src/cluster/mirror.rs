//! A local copy of every key under one etcd prefix, kept current by a watch and published on a
//! `watch` channel: the live node table (`P nodes/`) and the leaders table (`P leader/`).
//!
//! The copy is loaded once before anything subscribes, then follows the watch from the loaded
//! revision + 1; when the watch ends (history compacted, a lasting error) it is loaded again.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xpool_etcd::{Client, EventKind, KeyValue};

/// Every key under a prefix, by the rest of its key, at one revision.
#[derive(Debug, Clone)]
pub struct Snapshot<T> {
    /// The etcd revision the copy is current to (at least).
    pub revision: i64,
    /// The entries, by key without the prefix (`n1` for `P nodes/n1`).
    pub entries: BTreeMap<String, Entry<T>>,
}

/// One key of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    /// The parsed value.
    pub value: T,
    /// The revision that created the key: a leadership key's fencing token.
    pub create_revision: i64,
    /// The lease the key is attached to.
    pub lease: i64,
    /// When this process first saw the key with this `create_revision` (local time; at start-up,
    /// the load).
    pub seen: Instant,
}

impl<T> Default for Snapshot<T> {
    fn default() -> Self {
        Snapshot {
            revision: 0,
            entries: BTreeMap::new(),
        }
    }
}

/// Turns a key's value into `T`; `None` skips the key (logged).
pub(crate) type Parse<T> = fn(&[u8]) -> Option<T>;

/// Keeps a [`Snapshot`] of one prefix current; see the module docs.
pub(crate) struct Mirror<T> {
    client: Client,
    prefix: String,
    parse: Parse<T>,
    /// Where snapshots go; receivers are handed out by [`Mirror::load`]'s caller.
    tx: watch::Sender<Snapshot<T>>,
}

impl<T> fmt::Debug for Mirror<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// How long to wait before loading again after a failed load.
const RETRY: Duration = Duration::from_millis(300);

impl<T: Clone + Send + Sync + 'static> Mirror<T> {
    /// Loads the prefix once; the mirror, to [`run`](Self::run), and a receiver of its copies.
    pub(crate) async fn load(
        client: Client,
        prefix: String,
        parse: Parse<T>,
    ) -> Result<(Self, watch::Receiver<Snapshot<T>>), xpool_etcd::Error> {
        let (tx, rx) = watch::channel(Snapshot::default());
        let mirror = Mirror {
            client,
            prefix,
            parse,
            tx,
        };
        mirror.reload().await?;
        Ok((mirror, rx))
    }

    /// Follows the prefix until `cancel`: a watch from the copy's revision + 1, loaded again
    /// whenever the watch ends.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        loop {
            let from = self.tx.borrow().revision + 1;
            let mut watcher = self.client.watch_prefix(self.prefix.clone(), from);
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return,
                    next = watcher.next() => next,
                };
                match next {
                    Some(Ok(batch)) => self.apply(batch.revision, &batch.events),
                    Some(Err(error)) => {
                        tracing::warn!(prefix = %self.prefix, %error, "etcd watch ended; reloading");
                        break;
                    }
                    None => break,
                }
            }
            while let Err(error) = self.reload().await {
                tracing::warn!(prefix = %self.prefix, %error, "reloading from etcd failed; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }

    /// Replaces the copy with the prefix as etcd has it now.
    async fn reload(&self) -> Result<(), xpool_etcd::Error> {
        let response = self.client.get_prefix(self.prefix.clone()).await?;
        let now = Instant::now();
        self.tx.send_modify(|snapshot| {
            let mut entries = BTreeMap::new();
            for kv in &response.kvs {
                if let Some((name, mut entry)) = self.entry(kv, now) {
                    if let Some(old) = snapshot.entries.get(&name)
                        && old.create_revision == entry.create_revision
                    {
                        entry.seen = old.seen;
                    }
                    entries.insert(name, entry);
                }
            }
            snapshot.entries = entries;
            snapshot.revision = response.revision;
        });
        Ok(())
    }

    /// Applies one watch batch; subscribers are woken only when an entry changed.
    fn apply(&self, revision: i64, events: &[xpool_etcd::Event]) {
        let now = Instant::now();
        self.tx.send_if_modified(|snapshot| {
            snapshot.revision = snapshot.revision.max(revision);
            for event in events {
                let name = self.name(&event.kv.key);
                match event.kind {
                    EventKind::Delete => {
                        snapshot.entries.remove(&name);
                    }
                    EventKind::Put => match self.entry(&event.kv, now) {
                        Some((name, mut entry)) => {
                            if let Some(old) = snapshot.entries.get(&name)
                                && old.create_revision == entry.create_revision
                            {
                                entry.seen = old.seen;
                            }
                            snapshot.entries.insert(name, entry);
                        }
                        None => {
                            snapshot.entries.remove(&name);
                        }
                    },
                }
            }
            !events.is_empty()
        });
    }

    fn name(&self, key: &[u8]) -> String {
        let rest = key.get(self.prefix.len()..).unwrap_or_default();
        String::from_utf8_lossy(rest).into_owned()
    }

    fn entry(&self, kv: &KeyValue, seen: Instant) -> Option<(String, Entry<T>)> {
        let name = self.name(&kv.key);
        let Some(value) = (self.parse)(&kv.value) else {
            tracing::warn!(prefix = %self.prefix, key = %name, "skipping an unreadable etcd entry");
            return None;
        };
        let entry = Entry {
            value,
            create_revision: kv.create_revision,
            lease: kv.lease,
            seen,
        };
        Some((name, entry))
    }
}
