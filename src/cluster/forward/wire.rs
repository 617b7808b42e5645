//! Just enough of the gRPC and protobuf wire formats to find a request's target: the first
//! frame of a request body, and one or two string fields of its message, without decoding the
//! message (so without knowing its type).

/// Bytes before a gRPC message: a compression flag and a big-endian `u32` length.
pub(super) const PREFIX: usize = 5;

/// The first frame of a request body, from the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FirstFrame<'a> {
    /// The frame is not whole yet: it needs this many bytes in all (`None`: the prefix is not
    /// whole yet either).
    Incomplete(Option<usize>),
    /// The frame's message is compressed: not looked into.
    Compressed,
    /// The frame's message, uncompressed.
    Message(&'a [u8]),
}

/// The first frame in `buf`, the start of a request body.
pub(super) fn first_frame(buf: &[u8]) -> FirstFrame<'_> {
    let Some(prefix) = buf.get(..PREFIX) else {
        return FirstFrame::Incomplete(None);
    };
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    let total = PREFIX.saturating_add(len);
    match buf.get(PREFIX..total) {
        None => FirstFrame::Incomplete(Some(total)),
        Some(_) if prefix[0] != 0 => FirstFrame::Compressed,
        Some(message) => FirstFrame::Message(message),
    }
}

/// The last value of the string fields `a` and `b` (field numbers) in the protobuf message
/// `message`, each `None` when absent (or not asked for). `None` in all when the message is
/// malformed, or a field asked for is not a length-delimited UTF-8 value: the handler then
/// answers INVALID_ARGUMENT itself.
pub(super) fn strings(message: &[u8], a: Option<u32>, b: Option<u32>) -> Option<Fields<'_>> {
    let mut fields = Fields::default();
    let mut rest = message;
    while !rest.is_empty() {
        let key = prost::encoding::decode_varint(&mut rest).ok()?;
        let number = u32::try_from(key >> 3).ok().filter(|n| *n != 0)?;
        let slot = if Some(number) == a {
            Some(&mut fields.a)
        } else if Some(number) == b {
            Some(&mut fields.b)
        } else {
            None
        };
        match (key & 7, slot) {
            (2, slot) => {
                let len = usize::try_from(prost::encoding::decode_varint(&mut rest).ok()?).ok()?;
                let value = rest.get(..len)?;
                rest = &rest[len..];
                if let Some(slot) = slot {
                    *slot = Some(std::str::from_utf8(value).ok()?);
                }
            }
            (_, Some(_)) => return None,
            (0, None) => {
                prost::encoding::decode_varint(&mut rest).ok()?;
            }
            (1, None) => rest = rest.get(8..)?,
            (5, None) => rest = rest.get(4..)?,
            // Groups (3, 4) are not in proto3; 6 and 7 are no wire type.
            _ => return None,
        }
    }
    Some(fields)
}

/// The values [`strings`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Fields<'a> {
    pub a: Option<&'a str>,
    pub b: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::grpc::pb;

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut buf = vec![flag];
        buf.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        buf.extend_from_slice(message);
        buf
    }

    #[test]
    fn a_frame_is_whole_once_its_length_is_there() {
        let buf = framed(0, b"abc");
        assert_eq!(first_frame(&buf[..3]), FirstFrame::Incomplete(None));
        assert_eq!(first_frame(&buf[..6]), FirstFrame::Incomplete(Some(8)));
        assert_eq!(first_frame(&buf), FirstFrame::Message(b"abc"));
        let mut two = buf.clone();
        two.extend_from_slice(&framed(0, b"next"));
        assert_eq!(first_frame(&two), FirstFrame::Message(b"abc"));
        assert_eq!(first_frame(&framed(0, b"")), FirstFrame::Message(b""));
        assert_eq!(first_frame(&framed(1, b"abc")), FirstFrame::Compressed);
        let huge = [0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            first_frame(&huge),
            FirstFrame::Incomplete(Some(PREFIX + u32::MAX as usize))
        );
    }

    #[test]
    fn finds_the_fields_of_real_requests() {
        let bind = pb::BindRequest {
            app: "rides".into(),
            party_a: "+8613800000001".into(),
            request_id: "r1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let found = strings(&bind, Some(1), None).unwrap();
        assert_eq!(found.a, Some("rides"));
        assert_eq!(found.b, None);

        let unbind = pb::UnbindRequest {
            binding: Some(pb::unbind_request::Binding::BindingId("b-1".into())),
            app: String::new(),
        }
        .encode_to_vec();
        let found = strings(&unbind, Some(3), Some(1)).unwrap();
        assert_eq!((found.a, found.b), (None, Some("b-1")));

        // Every other wire type is skipped: varints, fixed, nested messages.
        let list = pb::ListCallRecordsRequest {
            app: "chat".into(),
            binding_id: "b-2".into(),
            page_size: 300,
            start_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let found = strings(&list, Some(1), Some(2)).unwrap();
        assert_eq!((found.a, found.b), (Some("chat"), Some("b-2")));
    }

    #[test]
    fn skips_every_wire_type_and_keeps_the_last_value() {
        let mut message = Vec::new();
        message.extend_from_slice(&[0x10, 0x96, 0x01]); // 2: varint 150
        message.extend_from_slice(&[0x19, 1, 2, 3, 4, 5, 6, 7, 8]); // 3: fixed64
        message.extend_from_slice(&[0x25, 1, 2, 3, 4]); // 4: fixed32
        message.extend_from_slice(&[0x0a, 1, b'x']); // 1: "x"
        message.extend_from_slice(&[0x2a, 2, 0xff, 0xfe]); // 5: bytes, not UTF-8, not asked for
        message.extend_from_slice(&[0x0a, 2, b'y', b'z']); // 1 again: "yz" wins
        let found = strings(&message, Some(1), Some(9)).unwrap();
        assert_eq!((found.a, found.b), (Some("yz"), None));
        assert_eq!(strings(&[], Some(1), Some(2)), Some(Fields::default()));
    }

    #[test]
    fn malformed_messages_find_nothing() {
        let bad: &[&[u8]] = &[
            &[0x0a],          // a key, no length
            &[0x0a, 5, b'a'], // a length past the end
            &[0x0a, 1, 0xff], // the field asked for is not UTF-8
            &[0x08, 1],       // the field asked for is a varint
            &[0x10, 0x80],    // a varint cut short
            &[0x19, 1, 2],    // a fixed64 cut short
            &[0x25, 1],       // a fixed32 cut short
            &[0x13, 0x14],    // a group
            &[0x16, 0],       // wire type 6
            &[0x02, 0],       // field number 0
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ], // varint overflow
        ];
        for message in bad {
            assert_eq!(strings(message, Some(1), None), None, "{message:?}");
        }
    }
}
