//! The write-ahead log's on-disk format: segment files of checksummed records.
//!
//! A segment is [`MAGIC`], then records back to back, then possibly zeros to its end (a
//! segment prepared ahead of use, see `Segment` in the log's module): zeros where a record
//! would start end the segment, as its end does. A record is
//! `payload length: u32 LE ‖ crc32(payload): u32 LE ‖ payload`, and a payload is
//! `seq: u64 LE ‖ op count: u32 LE ‖ ops`. An op is
//! `tree: u8 ‖ key length: u32 LE ‖ key ‖ 0` (remove) or `… ‖ 1 ‖ value length: u32 LE ‖ value`
//! (insert). One record is one store transaction, so it is replayed whole or not at all.

/// First bytes of every segment file (format version in the last byte).
pub const MAGIC: &[u8; 8] = b"XPWAL\0\0\x01";

/// Bytes before a record's payload: its length and its checksum.
const HEADER: usize = 8;

/// A record longer than this is corruption (a transaction touches a handful of small values).
const MAX_PAYLOAD: usize = 64 << 20;

/// The store's trees, as a WAL op names them (the byte values are on disk, and in cluster mode
/// in etcd keys: never renumber).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TreeId {
    Bindings = 0,
    Requests = 1,
    Numbers = 2,
    Expiry = 3,
    Slots = 4,
    Open = 5,
    Meta = 6,
    Released = 7,
    Remembered = 8,
    Calls = 9,
    Sessions = 10,
    CallLinks = 11,
    Messages = 12,
    MessageIds = 13,
    Changes = 14,
    Subscriptions = 15,
}

impl TreeId {
    /// How many trees there are.
    pub const COUNT: usize = 16;

    /// Every tree.
    pub const ALL: [TreeId; TreeId::COUNT] = [
        TreeId::Bindings,
        TreeId::Requests,
        TreeId::Numbers,
        TreeId::Expiry,
        TreeId::Slots,
        TreeId::Open,
        TreeId::Meta,
        TreeId::Released,
        TreeId::Remembered,
        TreeId::Calls,
        TreeId::Sessions,
        TreeId::CallLinks,
        TreeId::Messages,
        TreeId::MessageIds,
        TreeId::Changes,
        TreeId::Subscriptions,
    ];

    /// The tree a byte names (as the log and etcd keys write it), if any.
    pub fn from_byte(byte: u8) -> Option<TreeId> {
        Some(match byte {
            0 => TreeId::Bindings,
            1 => TreeId::Requests,
            2 => TreeId::Numbers,
            3 => TreeId::Expiry,
            4 => TreeId::Slots,
            5 => TreeId::Open,
            6 => TreeId::Meta,
            7 => TreeId::Released,
            8 => TreeId::Remembered,
            9 => TreeId::Calls,
            10 => TreeId::Sessions,
            11 => TreeId::CallLinks,
            12 => TreeId::Messages,
            13 => TreeId::MessageIds,
            14 => TreeId::Changes,
            15 => TreeId::Subscriptions,
            _ => return None,
        })
    }
}

/// One change to one tree: `value` is `Some` for an insert, `None` for a remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub tree: TreeId,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// One transaction's changes, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub ops: Vec<Op>,
}

/// Appends the record (seq, ops) to `out`.
pub fn encode(seq: u64, ops: &[Op], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&len32(ops.len()).to_le_bytes());
    for op in ops {
        out.push(op.tree as u8);
        out.extend_from_slice(&len32(op.key.len()).to_le_bytes());
        out.extend_from_slice(&op.key);
        match &op.value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                out.extend_from_slice(&len32(value.len()).to_le_bytes());
                out.extend_from_slice(value);
            }
        }
    }
    let payload = &out[start + HEADER..];
    let (len, crc) = (len32(payload.len()), crc32fast::hash(payload));
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Store keys and values are far below 4 GiB (sled refuses larger), so lengths fit a u32.
fn len32(len: usize) -> u32 {
    u32::try_from(len).expect("store keys and values are shorter than 4 GiB")
}

/// What [`read`] found at a position.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole, intact record; the position moved past it.
    Record(Record),
    /// Nothing left: the position is at the end.
    End,
    /// Bytes that are not a whole intact record (a write cut short by a crash, or damage);
    /// the position did not move.
    Bad(&'static str),
}

/// The length of the record starting at `bytes` according to its header (header included), or
/// `None` if not even the header is whole. Used to tell a torn tail from damage.
pub fn claimed_len(bytes: &[u8]) -> Option<usize> {
    let header = bytes.first_chunk::<HEADER>()?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    Some(HEADER.saturating_add(len))
}

/// Whether `rest` holds no record, only zeros (or nothing): the unwritten part of a prepared
/// segment. No record starts with a zero header (its payload is never empty), so the check
/// stops within a record's first bytes and reads through only a rest of zeros.
pub fn is_blank(rest: &[u8]) -> bool {
    rest.iter().all(|&b| b == 0)
}

/// Reads the record at `*pos` in `segment` (which starts after [`MAGIC`]).
pub fn read(segment: &[u8], pos: &mut usize) -> Next {
    let rest = &segment[*pos..];
    if is_blank(rest) {
        return Next::End;
    }
    let Some((header, body)) = rest.split_first_chunk::<HEADER>() else {
        return Next::Bad("record header cut short");
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_PAYLOAD {
        return Next::Bad("record length out of range");
    }
    let Some(payload) = body.get(..len) else {
        return Next::Bad("record cut short");
    };
    if crc32fast::hash(payload) != crc {
        return Next::Bad("record checksum mismatch");
    }
    match parse(payload) {
        Some(record) => {
            *pos += HEADER + len;
            Next::Record(record)
        }
        None => Next::Bad("record payload malformed"),
    }
}

fn parse(payload: &[u8]) -> Option<Record> {
    let mut r = Reader(payload);
    let seq = u64::from_le_bytes(r.take_array()?);
    let count = r.u32()?;
    let mut ops = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let tree = TreeId::from_byte(r.take_array::<1>()?[0])?;
        let key = r.bytes()?;
        let value = match r.take_array::<1>()?[0] {
            0 => None,
            1 => Some(r.bytes()?),
            _ => return None,
        };
        ops.push(Op { tree, key, value });
    }
    r.0.is_empty().then_some(Record { seq, ops })
}

/// A cursor over a payload that fails (None) instead of reading past the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take_array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take_array().map(u32::from_le_bytes)
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.u32()? as usize;
        let bytes = self.0.get(..len)?.to_vec();
        self.0 = &self.0[len..];
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op> {
        vec![
            Op {
                tree: TreeId::Bindings,
                key: vec![1; 16],
                value: Some(b"record".to_vec()),
            },
            Op {
                tree: TreeId::Expiry,
                key: vec![2; 24],
                value: Some(Vec::new()),
            },
            Op {
                tree: TreeId::Meta,
                key: b"job/x".to_vec(),
                value: None,
            },
        ]
    }

    fn two_records() -> Vec<u8> {
        let mut log = Vec::new();
        encode(7, &ops(), &mut log);
        encode(8, &[], &mut log);
        log
    }

    #[test]
    fn records_read_back_in_order() {
        let log = two_records();
        let mut pos = 0;
        assert_eq!(
            read(&log, &mut pos),
            Next::Record(Record { seq: 7, ops: ops() })
        );
        assert_eq!(
            read(&log, &mut pos),
            Next::Record(Record {
                seq: 8,
                ops: vec![]
            })
        );
        assert_eq!(read(&log, &mut pos), Next::End);
        assert_eq!(pos, log.len());
    }

    #[test]
    fn zeros_after_the_records_end_the_segment() {
        let mut log = two_records();
        let records = log.len();
        log.resize(records + 4096, 0);
        let mut pos = 0;
        assert!(matches!(read(&log, &mut pos), Next::Record(_)));
        assert!(matches!(read(&log, &mut pos), Next::Record(_)));
        assert_eq!(read(&log, &mut pos), Next::End);
        assert_eq!(pos, records, "the end is where the records end");
    }

    #[test]
    fn a_zero_header_before_more_bytes_is_bad() {
        let mut log = vec![0; HEADER];
        encode(7, &ops(), &mut log);
        let mut pos = 0;
        assert_eq!(read(&log, &mut pos), Next::Bad("record payload malformed"));
        assert_eq!(pos, 0);
        // Zeros with a single byte set far past them are not blank either.
        let mut zeros = vec![0; 4096];
        zeros[4000] = 1;
        assert!(matches!(read(&zeros, &mut 0), Next::Bad(_)));
    }

    #[test]
    fn a_cut_short_record_is_bad_at_every_length() {
        let log = two_records();
        let mut first_end = 0;
        assert!(matches!(read(&log, &mut first_end), Next::Record(_)));
        for cut in first_end + 1..log.len() {
            let mut pos = first_end;
            assert!(
                matches!(read(&log[..cut], &mut pos), Next::Bad(_)),
                "cut at {cut}"
            );
            assert_eq!(pos, first_end, "a bad record does not move the position");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let log = two_records();
        for byte in 0..log.len() {
            let mut damaged = log.clone();
            damaged[byte] ^= 0x10;
            let mut pos = 0;
            let first = read(&damaged, &mut pos);
            let second = read(&damaged, &mut pos);
            let intact = matches!(first, Next::Record(Record { seq: 7, .. }))
                && matches!(second, Next::Record(Record { seq: 8, .. }));
            assert!(!intact, "flip in byte {byte} went unnoticed");
        }
    }
}
