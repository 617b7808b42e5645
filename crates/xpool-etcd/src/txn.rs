//! Transactions: compares, then the success or the failure operations, atomically at one
//! revision. A false compare is a result ([`TxnResponse::succeeded`] is `false`), not an error.
//!
//! etcd 3.4 limits a transaction to 128 operations (`--max-txn-ops`) and a request to 1.5 MiB
//! (`--max-request-bytes`), and forbids putting or deleting one key twice in a transaction;
//! over either limit the call fails with [`Error::InvalidArgument`].

use crate::{
    Client, Error, KeyValue, Range, RangeResponse,
    client::{Kind, MAX_MESSAGE},
    kv::prefix_end,
    pb::etcdserverpb::{
        self as pb, DeleteRangeRequest, PutRequest, RequestOp, compare, kv_client::KvClient,
        request_op, response_op,
    },
};

/// How a compare relates the key's field to the given value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// field == value
    Equal,
    /// field != value
    NotEqual,
    /// field > value
    Greater,
    /// field < value
    Less,
}

/// One condition of a transaction on a key's field. A missing key has create_revision,
/// mod_revision and version 0 (and its value compares false).
#[derive(Debug, Clone, PartialEq)]
pub struct Compare(pb::Compare);

impl Compare {
    fn new(key: Vec<u8>, op: CompareOp, target: compare::TargetUnion) -> Self {
        let result = match op {
            CompareOp::Equal => compare::CompareResult::Equal,
            CompareOp::NotEqual => compare::CompareResult::NotEqual,
            CompareOp::Greater => compare::CompareResult::Greater,
            CompareOp::Less => compare::CompareResult::Less,
        };
        let kind = match target {
            compare::TargetUnion::Version(_) => compare::CompareTarget::Version,
            compare::TargetUnion::CreateRevision(_) => compare::CompareTarget::Create,
            compare::TargetUnion::ModRevision(_) => compare::CompareTarget::Mod,
            compare::TargetUnion::Value(_) => compare::CompareTarget::Value,
            compare::TargetUnion::Lease(_) => compare::CompareTarget::Lease,
        };
        Self(pb::Compare {
            result: result as i32,
            target: kind as i32,
            key,
            range_end: Vec::new(),
            target_union: Some(target),
        })
    }

    /// Compares the key's create_revision (0: the key does not exist).
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Self {
        Self::new(
            key.into(),
            op,
            compare::TargetUnion::CreateRevision(revision),
        )
    }

    /// Compares the key's mod_revision (0: the key does not exist).
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Self {
        Self::new(key.into(), op, compare::TargetUnion::ModRevision(revision))
    }

    /// Compares the key's version (0: the key does not exist).
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Self {
        Self::new(key.into(), op, compare::TargetUnion::Version(version))
    }

    /// Compares the key's value.
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        Self::new(key.into(), op, compare::TargetUnion::Value(value.into()))
    }

    /// Compares the key's lease id (0: no lease).
    pub fn lease(key: impl Into<Vec<u8>>, op: CompareOp, lease: i64) -> Self {
        Self::new(key.into(), op, compare::TargetUnion::Lease(lease))
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnOp(RequestOp);

impl TxnOp {
    fn op(request: request_op::Request) -> Self {
        Self(RequestOp {
            request: Some(request),
        })
    }

    /// Writes `key`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self::put_with_lease(key, value, 0)
    }

    /// Writes `key` attached to `lease`.
    pub fn put_with_lease(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, lease: i64) -> Self {
        let put = PutRequest {
            key: key.into(),
            value: value.into(),
            lease,
            ..PutRequest::default()
        };
        Self::op(request_op::Request::RequestPut(put))
    }

    /// Deletes `key`.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        let delete = DeleteRangeRequest {
            key: key.into(),
            ..DeleteRangeRequest::default()
        };
        Self::op(request_op::Request::RequestDeleteRange(delete))
    }

    /// Deletes every key under `prefix`.
    pub fn delete_prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        let delete = DeleteRangeRequest {
            key,
            range_end,
            ..DeleteRangeRequest::default()
        };
        Self::op(request_op::Request::RequestDeleteRange(delete))
    }

    /// Reads a range (at the transaction's revision).
    pub fn get(range: Range) -> Self {
        Self::op(request_op::Request::RequestRange(range.into_request()))
    }

    /// Runs a nested transaction (its compares see the outer transaction's writes so far).
    pub fn txn(txn: Txn) -> Self {
        Self::op(request_op::Request::RequestTxn(txn.into_request()))
    }
}

/// A transaction: `If(compares) Then(success) Else(failure)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Txn {
    compares: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction (no compares: it succeeds).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds compares; all must hold for the success branch.
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }

    /// Adds operations run when every compare holds.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    /// Adds operations run when a compare fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }

    fn into_request(self) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: self.compares.into_iter().map(|c| c.0).collect(),
            success: self.success.into_iter().map(|op| op.0).collect(),
            failure: self.failure.into_iter().map(|op| op.0).collect(),
        }
    }
}

/// What one operation of the branch that ran returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResponse {
    /// A put.
    Put,
    /// A delete, with the number of keys deleted.
    Delete {
        /// How many keys the delete removed.
        deleted: i64,
    },
    /// A range, with what it read.
    Get(RangeResponse),
    /// A nested transaction, with its outcome.
    Txn(TxnResponse),
}

/// The outcome of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (the success branch ran) or not (the failure branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction (its own revision if it wrote).
    pub revision: i64,
    /// One response per operation of the branch that ran, in order.
    pub responses: Vec<TxnOpResponse>,
}

impl TxnResponse {
    /// The keys read by the `index`-th operation when it was a range.
    pub fn range(&self, index: usize) -> Option<&[KeyValue]> {
        match self.responses.get(index) {
            Some(TxnOpResponse::Get(range)) => Some(&range.kvs),
            _ => None,
        }
    }
}

impl Client {
    /// Runs a transaction. Not retried once sent: on `Unavailable`/`Timeout` it may or may not
    /// have committed, and the caller's compares must make a retry safe.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        let response = self
            .unary(
                Kind::Write,
                txn.into_request(),
                |channel, request| async move {
                    KvClient::new(channel)
                        .max_decoding_message_size(MAX_MESSAGE)
                        .txn(request)
                        .await
                },
            )
            .await?;
        Ok(TxnResponse::from_pb(response))
    }
}

impl TxnResponse {
    fn from_pb(response: pb::TxnResponse) -> Self {
        let revision = response.header.map_or(0, |h| h.revision);
        let responses = response
            .responses
            .into_iter()
            .filter_map(|op| op.response)
            .map(|op| match op {
                response_op::Response::ResponsePut(_) => TxnOpResponse::Put,
                response_op::Response::ResponseDeleteRange(d) => {
                    TxnOpResponse::Delete { deleted: d.deleted }
                }
                response_op::Response::ResponseRange(r) => {
                    TxnOpResponse::Get(RangeResponse::from_pb(r))
                }
                response_op::Response::ResponseTxn(t) => TxnOpResponse::Txn(Self::from_pb(t)),
            })
            .collect();
        Self {
            succeeded: response.succeeded,
            revision,
            responses,
        }
    }
}
