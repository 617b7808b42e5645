//! Key/value calls: ranges (one key, a prefix, at a revision), puts, deletes and compaction.

use crate::{
    Client, Error,
    client::{Kind, MAX_MESSAGE},
    pb::{
        etcdserverpb::{
            CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, kv_client::KvClient,
        },
        mvccpb,
    },
};

/// A key and its value with etcd's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The revision that created this key (since its last deletion): the fencing token of a
    /// leadership key.
    pub create_revision: i64,
    /// The revision of the key's last change.
    pub mod_revision: i64,
    /// The number of changes since creation (1 after a create, 0 after a delete).
    pub version: i64,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

impl From<mvccpb::KeyValue> for KeyValue {
    fn from(kv: mvccpb::KeyValue) -> Self {
        let mvccpb::KeyValue {
            key,
            create_revision,
            mod_revision,
            version,
            value,
            lease,
        } = kv;
        Self {
            key,
            value,
            create_revision,
            mod_revision,
            version,
            lease,
        }
    }
}

/// Which keys a range reads, at which revision.
#[derive(Debug, Clone)]
pub struct Range {
    key: Vec<u8>,
    range_end: Vec<u8>,
    revision: i64,
    limit: i64,
    serializable: bool,
}

impl Range {
    /// The single key `key`.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            range_end: Vec::new(),
            revision: 0,
            limit: 0,
            serializable: false,
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        Self {
            key,
            range_end,
            revision: 0,
            limit: 0,
            serializable: false,
        }
    }

    /// Starts the range at `key` instead, keeping its end: the next page after the last key
    /// read is `starting_at(last ‖ 0)`.
    pub fn starting_at(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = key.into();
        self
    }

    /// Reads as of `revision` (0, the default, is the latest). The response's
    /// [`RangeResponse::revision`] is still the store's revision now, not this one.
    pub fn revision(mut self, revision: i64) -> Self {
        self.revision = revision;
        self
    }

    /// Returns at most `limit` keys (0, the default, is no limit); `more` says if some were left.
    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }

    /// Serves the read from the member's local state, without a quorum round (may be stale).
    pub fn serializable(mut self) -> Self {
        self.serializable = true;
        self
    }

    pub(crate) fn into_request(self) -> RangeRequest {
        RangeRequest {
            key: self.key,
            range_end: self.range_end,
            revision: self.revision,
            limit: self.limit,
            serializable: self.serializable,
            ..RangeRequest::default()
        }
    }
}

/// The keys a range found, and the store's revision it was read at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// The store's revision when the range was served. For a read of the latest state
    /// (revision 0) that is the revision read: watch from `revision + 1` to miss nothing. A read
    /// at an older revision still reports the store's revision now.
    pub revision: i64,
    /// Whether a limit left keys out.
    pub more: bool,
    /// The number of keys in the range (ignoring the limit).
    pub count: i64,
}

impl RangeResponse {
    pub(crate) fn from_pb(response: crate::pb::etcdserverpb::RangeResponse) -> Self {
        Self {
            kvs: response.kvs.into_iter().map(KeyValue::from).collect(),
            revision: response.header.map_or(0, |h| h.revision),
            more: response.more,
            count: response.count,
        }
    }

    /// The first key found (the only one for a single-key range).
    pub fn first(&self) -> Option<&KeyValue> {
        self.kvs.first()
    }
}

impl Client {
    /// Reads a range (linearizable unless [`Range::serializable`]).
    pub async fn range(&self, range: Range) -> Result<RangeResponse, Error> {
        let response = self
            .unary(
                Kind::Read,
                range.into_request(),
                |channel, request| async move {
                    KvClient::new(channel)
                        .max_decoding_message_size(MAX_MESSAGE)
                        .range(request)
                        .await
                },
            )
            .await?;
        Ok(RangeResponse::from_pb(response))
    }

    /// Reads one key.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<RangeResponse, Error> {
        self.range(Range::key(key)).await
    }

    /// Reads every key under `prefix`, in one response.
    pub async fn get_prefix(&self, prefix: impl Into<Vec<u8>>) -> Result<RangeResponse, Error> {
        self.range(Range::prefix(prefix)).await
    }

    /// Reads every key under `prefix` at one revision, in pages of `page` keys, so that no
    /// response nears the message size limits. Each page gets the client's deadline.
    pub async fn scan_prefix(
        &self,
        prefix: impl Into<Vec<u8>>,
        page: i64,
    ) -> Result<RangeResponse, Error> {
        let prefix = prefix.into();
        let mut out = RangeResponse::default();
        let mut range = Range::prefix(prefix).limit(page.max(1));
        loop {
            let response = self.range(range.clone()).await?;
            if range.revision == 0 {
                // Every later page reads at the first one's revision: their own headers carry
                // the store's revision at their time, which writes between pages move on.
                out.revision = response.revision;
                range.revision = response.revision;
            }
            out.count = out.count.max(response.count);
            let Some(last) = response.kvs.last() else {
                break;
            };
            let mut next = last.key.clone();
            next.push(0);
            let more = response.more;
            out.kvs.extend(response.kvs);
            if !more {
                break;
            }
            range.key = next;
        }
        Ok(out)
    }

    /// Writes `key`, returning the revision of the write.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<i64, Error> {
        self.put_with_lease(key, value, 0).await
    }

    /// Writes `key` attached to `lease` (deleted when the lease ends), returning the revision.
    pub async fn put_with_lease(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        lease: i64,
    ) -> Result<i64, Error> {
        let req = PutRequest {
            key: key.into(),
            value: value.into(),
            lease,
            ..PutRequest::default()
        };
        let response = self
            .unary(Kind::Write, req, |channel, request| async move {
                KvClient::new(channel).put(request).await
            })
            .await?;
        Ok(response.header.map_or(0, |h| h.revision))
    }

    /// Deletes `key`, returning how many keys were deleted (0 or 1) and the store revision.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<(i64, i64), Error> {
        self.delete_range(key.into(), Vec::new()).await
    }

    /// Deletes every key under `prefix`, returning how many were deleted and the store revision.
    pub async fn delete_prefix(&self, prefix: impl Into<Vec<u8>>) -> Result<(i64, i64), Error> {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        self.delete_range(key, range_end).await
    }

    async fn delete_range(&self, key: Vec<u8>, range_end: Vec<u8>) -> Result<(i64, i64), Error> {
        let req = DeleteRangeRequest {
            key,
            range_end,
            ..DeleteRangeRequest::default()
        };
        let response = self
            .unary(Kind::Write, req, |channel, request| async move {
                KvClient::new(channel).delete_range(request).await
            })
            .await?;
        Ok((response.deleted, response.header.map_or(0, |h| h.revision)))
    }

    /// Discards the history before `revision` (reads and watches below it then fail with
    /// [`Error::Compacted`]). `physical` waits until the space is reclaimed.
    pub async fn compact(&self, revision: i64, physical: bool) -> Result<(), Error> {
        let req = CompactionRequest { revision, physical };
        self.unary(Kind::Write, req, |channel, request| async move {
            KvClient::new(channel).compact(request).await
        })
        .await?;
        Ok(())
    }
}

/// The end of the range of keys that start with `prefix`: the prefix with its last byte below
/// 0xff incremented and what follows dropped; `[0]` (every key) when there is no such byte.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte_below_0xff() {
        assert_eq!(prefix_end(b"/xpool/"), b"/xpool0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
