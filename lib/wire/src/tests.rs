use super::*;

fn varint_bytes(value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_varint(value, &mut out);
    out
}

fn key_bytes(key: u64) -> Vec<u8> {
    varint_bytes(key)
}

/// A message of one field of each wire type, then a nested message.
fn every_wire_type() -> Vec<u8> {
    let mut m = Vec::new();
    encode_key(1, WireType::Varint, &mut m);
    encode_varint(300, &mut m);
    encode_key(2, WireType::Fixed64, &mut m);
    m.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
    encode_key(3, WireType::Len, &mut m);
    encode_varint(3, &mut m);
    m.extend_from_slice(b"abc");
    encode_key(4, WireType::Fixed32, &mut m);
    m.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    // Field 100 (a two-byte key) holding a message with field 1 = 7.
    encode_key(100, WireType::Len, &mut m);
    encode_varint(2, &mut m);
    m.extend_from_slice(&[0x08, 7]);
    m
}

#[test]
fn every_wire_type_is_read() {
    let m = every_wire_type();
    let mut r = Reader::new(&m);
    assert_eq!(r.next_value(), Ok(Some((1, Value::Varint(300)))));
    assert_eq!(r.position(), 3);
    assert_eq!(
        r.next_value(),
        Ok(Some((2, Value::Fixed64(0x0102_0304_0506_0708))))
    );
    assert_eq!(r.next_value(), Ok(Some((3, Value::Len(&b"abc"[..])))));
    assert_eq!(r.next_value(), Ok(Some((4, Value::Fixed32(0xdead_beef)))));
    let Ok(Some((100, Value::Len(inner)))) = r.next_value() else {
        panic!("field 100 is a nested message")
    };
    assert!(r.at_end());
    assert_eq!(r.next_value(), Ok(None));
    assert_eq!(r.position(), m.len());
    let mut nested = Reader::new(inner);
    assert_eq!(nested.key(), Ok((1, WireType::Varint)));
    assert_eq!(nested.varint(), Ok(7));
    assert!(nested.at_end());
}

#[test]
fn each_read_takes_its_own_bytes() {
    let m = every_wire_type();
    let mut r = Reader::new(&m);
    assert_eq!(r.key(), Ok((1, WireType::Varint)));
    assert_eq!(r.varint(), Ok(300));
    assert_eq!(r.key(), Ok((2, WireType::Fixed64)));
    assert_eq!(r.fixed64(), Ok(0x0102_0304_0506_0708));
    assert_eq!(r.key(), Ok((3, WireType::Len)));
    assert_eq!(r.bytes(), Ok(&b"abc"[..]));
    assert_eq!(r.key(), Ok((4, WireType::Fixed32)));
    assert_eq!(r.fixed32(), Ok(0xdead_beef));
    assert_eq!(r.key(), Ok((100, WireType::Len)));
    assert_eq!(r.value(WireType::Len), Ok(Value::Len(&[0x08, 7][..])));
    assert!(r.at_end());
}

#[test]
fn skipping_moves_past_each_wire_type() {
    let m = every_wire_type();
    let mut r = Reader::new(&m);
    let mut numbers = Vec::new();
    while !r.at_end() {
        let (number, wire) = r.key().expect("a key");
        r.skip(wire).expect("a value");
        numbers.push(number);
    }
    assert_eq!(numbers, [1, 2, 3, 4, 100]);
    assert_eq!(r.position(), m.len());
}

#[test]
fn fields_hand_out_payloads_and_raw_bytes() {
    let m = every_wire_type();
    let fields: Vec<Field<'_>> = fields(&m).collect::<Result<_, _>>().expect("valid");
    let summary: Vec<(u32, WireType, &[u8])> = fields
        .iter()
        .map(|f| (f.number, f.wire_type, f.payload))
        .collect();
    assert_eq!(
        summary,
        [
            (1, WireType::Varint, &[][..]),
            (2, WireType::Fixed64, &[8, 7, 6, 5, 4, 3, 2, 1][..]),
            (3, WireType::Len, &b"abc"[..]),
            (4, WireType::Fixed32, &[0xef, 0xbe, 0xad, 0xde][..]),
            (100, WireType::Len, &[0x08, 7][..]),
        ]
    );
    assert_eq!(fields[0].raw, [0x08, 0xac, 0x02]);
    assert_eq!(fields[4].raw, [0xa2, 0x06, 2, 0x08, 7]);
    // The raw bytes of every field, end to end, are the message.
    assert_eq!(
        fields
            .iter()
            .flat_map(|f| f.raw)
            .copied()
            .collect::<Vec<_>>(),
        m
    );
    assert_eq!(super::fields(&[]).count(), 0);
}

#[test]
fn fields_end_after_a_malformed_one() {
    // Field 1 = 1, then a length that runs past the end, then what would be a valid field.
    let m = [0x08, 1, 0x12, 9, 0x08, 1];
    let items: Vec<_> = fields(&m).collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    assert_eq!(items[1], Err(Error::Truncated));
    let mut it = fields(&m);
    it.by_ref().for_each(drop);
    assert_eq!(it.next(), None);
}

#[test]
fn varints_of_every_length_round_trip() {
    let mut values = vec![0, 1, 127, 128, 300, 16_383, 16_384, u64::MAX, u64::MAX - 1];
    values.extend((0..64).map(|bit| 1u64 << bit));
    values.extend((1..64).map(|bit| (1u64 << bit) - 1));
    for value in values {
        let bytes = varint_bytes(value);
        let expected_len = (64 - value.leading_zeros()).max(1).div_ceil(7) as usize;
        assert_eq!(bytes.len(), expected_len, "{value}");
        let mut r = Reader::new(&bytes);
        assert_eq!(r.varint(), Ok(value));
        assert!(r.at_end(), "{value}");
    }
}

#[test]
fn ten_byte_varints_hold_64_bits_and_no_more() {
    // u64::MAX: nine bytes of seven ones, and the 64th bit alone in the tenth.
    let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(Reader::new(&max).varint(), Ok(u64::MAX));
    // A 65th bit.
    let mut over = max;
    over[9] = 0x02;
    assert_eq!(Reader::new(&over).varint(), Err(Error::Varint));
    over[9] = 0x7f;
    assert_eq!(Reader::new(&over).varint(), Err(Error::Varint));
    // Eleven bytes.
    let mut eleven = vec![0x80; 10];
    eleven.push(0);
    assert_eq!(Reader::new(&eleven).varint(), Err(Error::Varint));
    // Ten bytes with padding are zero, as prost reads them.
    let mut padded = vec![0x80; 9];
    padded.push(0);
    let mut r = Reader::new(&padded);
    assert_eq!(r.varint(), Ok(0));
    assert!(r.at_end());
    // Whatever follows a varint is left.
    let mut r = Reader::new(&[0x96, 0x01, 0x05]);
    assert_eq!(r.varint(), Ok(150));
    assert_eq!(r.position(), 2);
}

#[test]
fn truncated_varints_are_refused() {
    for bytes in [
        &[][..],
        &[0x80],
        &[0xff, 0xff],
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80],
    ] {
        assert_eq!(Reader::new(bytes).varint(), Err(Error::Varint), "{bytes:?}");
    }
    // A key cut short, and a length cut short.
    assert_eq!(Reader::new(&[0x80]).key(), Err(Error::Varint));
    assert_eq!(Reader::new(&[0x0a, 0x80]).next_value(), Err(Error::Varint));
}

#[test]
fn keys_are_checked_as_prost_checks_them() {
    let key = |k: u64| Reader::new(&key_bytes(k)).key();
    assert_eq!(key((1 << 3) | 2), Ok((1, WireType::Len)));
    let max_field = (1u64 << 29) - 1;
    assert_eq!(
        key(max_field << 3 | 5),
        Ok((max_field as u32, WireType::Fixed32))
    );
    // Beyond 32 bits.
    assert_eq!(key(1 << 32), Err(Error::Key(1 << 32)));
    assert_eq!(key(u64::MAX), Err(Error::Key(u64::MAX)));
    // Wire types 6 and 7.
    assert_eq!(key((1 << 3) | 6), Err(Error::WireType(6)));
    assert_eq!(key((7 << 3) | 7), Err(Error::WireType(7)));
    // Field 0.
    assert_eq!(key(0), Err(Error::FieldZero));
    assert_eq!(key(2), Err(Error::FieldZero));
    // prost's order: the key's size, then its wire type, then its field number.
    assert_eq!(key((1 << 32) | 6), Err(Error::Key((1 << 32) | 6)));
    assert_eq!(key(6), Err(Error::WireType(6)));
    assert_eq!(key(3), Err(Error::FieldZero));
}

#[test]
fn groups_are_refused_after_their_key() {
    let key = |k: u64| Reader::new(&key_bytes(k)).key();
    assert_eq!(key((1 << 3) | 3), Ok((1, WireType::StartGroup)));
    assert_eq!(key((1 << 3) | 4), Ok((1, WireType::EndGroup)));
    // A group holding field 2 = 1.
    let group = [0x0b, 0x10, 1, 0x0c];
    assert_eq!(Reader::new(&group).next_value(), Err(Error::Group));
    assert_eq!(Reader::new(&group).next_field(), Err(Error::Group));
    let mut r = Reader::new(&group);
    let (_, wire) = r.key().expect("a group's key");
    assert_eq!(r.skip(wire), Err(Error::Group));
    assert_eq!(
        Reader::new(&[0x0c]).value(WireType::EndGroup),
        Err(Error::Group)
    );
}

#[test]
fn values_beyond_the_message_are_refused() {
    // Length-delimited: a length past the end, by one and by far.
    assert_eq!(Reader::new(&[3, b'a', b'b']).bytes(), Err(Error::Truncated));
    assert_eq!(
        Reader::new(&[0x0a, 5, 1]).next_value(),
        Err(Error::Truncated)
    );
    let mut huge = varint_bytes(u64::MAX);
    huge.extend_from_slice(b"abc");
    assert_eq!(Reader::new(&huge).bytes(), Err(Error::Truncated));
    let mut near = varint_bytes(usize::MAX as u64);
    near.push(0);
    assert_eq!(Reader::new(&near).bytes(), Err(Error::Truncated));
    // A length that ends the message exactly, and an empty payload.
    assert_eq!(Reader::new(&[2, b'a', b'b']).bytes(), Ok(&b"ab"[..]));
    assert_eq!(Reader::new(&[0]).bytes(), Ok(&[][..]));
    // Fixed widths.
    assert_eq!(Reader::new(&[0; 7]).fixed64(), Err(Error::Truncated));
    assert_eq!(Reader::new(&[0; 3]).fixed32(), Err(Error::Truncated));
    assert_eq!(
        Reader::new(&[0x09, 0, 0]).next_value(),
        Err(Error::Truncated)
    );
    assert_eq!(
        Reader::new(&[0x0d, 0, 0]).next_value(),
        Err(Error::Truncated)
    );
    // Skipping checks the same.
    assert_eq!(
        Reader::new(&[0; 7]).skip(WireType::Fixed64),
        Err(Error::Truncated)
    );
    assert_eq!(
        Reader::new(&[0; 3]).skip(WireType::Fixed32),
        Err(Error::Truncated)
    );
    assert_eq!(
        Reader::new(&[4, 1]).skip(WireType::Len),
        Err(Error::Truncated)
    );
    assert_eq!(
        Reader::new(&[0x80]).skip(WireType::Varint),
        Err(Error::Varint)
    );
    // Each read stays within its own message: a nested payload ends where it says.
    let mut r = Reader::new(&[0x0a, 1, 0x08, 0x10, 1]);
    let Ok(Some((1, Value::Len(inner)))) = r.next_value() else {
        panic!("a one-byte payload")
    };
    assert_eq!(Reader::new(inner).next_value(), Err(Error::Varint));
    assert_eq!(r.next_value(), Ok(Some((2, Value::Varint(1)))));
}

#[test]
fn errors_read_as_prost_writes_them() {
    use prost::encoding::{decode_key, decode_varint};
    let prost_key = |bytes: &[u8]| {
        let mut b = bytes;
        decode_key(&mut b).expect_err("refused").to_string()
    };
    let ours = |e: Error| format!("failed to decode Protobuf message: {e}");
    let mut b: &[u8] = &[0x80];
    assert_eq!(
        decode_varint(&mut b).expect_err("truncated").to_string(),
        ours(Error::Varint)
    );
    assert_eq!(prost_key(&key_bytes(1 << 33)), ours(Error::Key(1 << 33)));
    assert_eq!(prost_key(&[0x0f]), ours(Error::WireType(7)));
    assert_eq!(prost_key(&[0x00]), ours(Error::FieldZero));
}

#[test]
fn encoders_write_what_prost_writes() {
    for value in [0, 1, 127, 128, 150, 1 << 35, u64::MAX] {
        let mut theirs = Vec::new();
        prost::encoding::encode_varint(value, &mut theirs);
        assert_eq!(varint_bytes(value), theirs, "{value}");
    }
    for (number, wire, theirs) in [
        (1, WireType::Varint, prost::encoding::WireType::Varint),
        (
            15,
            WireType::Fixed64,
            prost::encoding::WireType::SixtyFourBit,
        ),
        (
            16,
            WireType::Len,
            prost::encoding::WireType::LengthDelimited,
        ),
        (
            (1 << 29) - 1,
            WireType::Fixed32,
            prost::encoding::WireType::ThirtyTwoBit,
        ),
    ] {
        let mut ours = Vec::new();
        encode_key(number, wire, &mut ours);
        let mut want = Vec::new();
        prost::encoding::encode_key(number, theirs, &mut want);
        assert_eq!(ours, want, "{number}");
    }
}

/// A small deterministic generator (splitmix64): the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random message written with prost's encoders: fields of every wire type, of small and
/// large numbers, varints of every length, nested messages; now and then a group or an
/// undefined wire type.
fn random_message(rng: &mut Rng, depth: u32) -> Vec<u8> {
    use prost::encoding::{WireType as W, encode_key, encode_varint};
    let mut out = Vec::new();
    for _ in 0..rng.below(8) {
        let number = match rng.below(4) {
            0 => 1 + rng.below(15) as u32,
            1 => 16 + rng.below(2048) as u32,
            _ => 1 + rng.below((1 << 29) - 1) as u32,
        };
        match rng.below(20) {
            0..=5 => {
                encode_key(number, W::Varint, &mut out);
                encode_varint(rng.next() >> rng.below(64), &mut out);
            }
            6..=8 => {
                encode_key(number, W::SixtyFourBit, &mut out);
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
            9..=11 => {
                encode_key(number, W::ThirtyTwoBit, &mut out);
                out.extend_from_slice(&(rng.next() as u32).to_le_bytes());
            }
            12..=14 if depth < 3 => {
                let inner = random_message(rng, depth + 1);
                encode_key(number, W::LengthDelimited, &mut out);
                encode_varint(inner.len() as u64, &mut out);
                out.extend_from_slice(&inner);
            }
            12..=17 => {
                let len = rng.below(200) as usize;
                encode_key(number, W::LengthDelimited, &mut out);
                encode_varint(len as u64, &mut out);
                out.extend((0..len).map(|_| rng.next() as u8));
            }
            18 => encode_key(number, W::StartGroup, &mut out),
            _ => encode_varint((u64::from(number) << 3) | (6 + rng.below(2)), &mut out),
        }
    }
    out
}

/// What one walk over a message saw: each field's number, wire type, payload and raw bytes,
/// then the error that ended it, if any.
type Walk = (Vec<(u32, u8, Vec<u8>, Vec<u8>)>, Option<String>);

fn walk_ours(buf: &[u8]) -> Walk {
    let mut seen = Vec::new();
    for field in fields(buf) {
        match field {
            Ok(f) => seen.push((
                f.number,
                f.wire_type as u8,
                f.payload.to_vec(),
                f.raw.to_vec(),
            )),
            // prost's texts for what prost refuses; the rest are this crate's.
            Err(e @ (Error::Group | Error::Truncated)) => return (seen, Some(e.to_string())),
            Err(e) => {
                return (
                    seen,
                    Some(format!("failed to decode Protobuf message: {e}")),
                );
            }
        }
    }
    (seen, None)
}

/// The same walk over prost's `decode_key` and `decode_varint`.
fn walk_prost(mut buf: &[u8]) -> Walk {
    use prost::encoding::{WireType as W, decode_key, decode_varint};
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = buf.split_at_checked(n)?;
        *buf = tail;
        Some(head)
    }
    let truncated = Some(Error::Truncated.to_string());
    let mut seen = Vec::new();
    while !buf.is_empty() {
        let start = buf;
        let (number, wire) = match decode_key(&mut buf) {
            Ok(key) => key,
            Err(e) => return (seen, Some(e.to_string())),
        };
        let payload: &[u8] = match wire {
            W::Varint => match decode_varint(&mut buf) {
                Ok(_) => &[],
                Err(e) => return (seen, Some(e.to_string())),
            },
            W::SixtyFourBit | W::ThirtyTwoBit => {
                let n = if wire == W::SixtyFourBit { 8 } else { 4 };
                match take(&mut buf, n) {
                    Some(b) => b,
                    None => return (seen, truncated),
                }
            }
            W::LengthDelimited => {
                let len = match decode_varint(&mut buf) {
                    Ok(len) => len,
                    Err(e) => return (seen, Some(e.to_string())),
                };
                match usize::try_from(len).ok().and_then(|n| take(&mut buf, n)) {
                    Some(b) => b,
                    None => return (seen, truncated),
                }
            }
            W::StartGroup | W::EndGroup => return (seen, Some(Error::Group.to_string())),
        };
        let raw = &start[..start.len() - buf.len()];
        seen.push((number, wire as u8, payload.to_vec(), raw.to_vec()));
    }
    (seen, None)
}

#[test]
fn random_messages_read_as_prost_reads_them() {
    let mut rng = Rng(0x5eed);
    let mut malformed = 0;
    let mut refusals = std::collections::BTreeSet::new();
    for case in 0..20_000 {
        let mut m = random_message(&mut rng, 0);
        match case % 4 {
            // As written.
            0 => {}
            // Cut short.
            1 => m.truncate(rng.below(m.len() as u64 + 1) as usize),
            // A byte changed.
            2 if !m.is_empty() => {
                let at = rng.below(m.len() as u64) as usize;
                m[at] = rng.next() as u8;
            }
            // Noise.
            _ => m = (0..rng.below(40)).map(|_| rng.next() as u8).collect(),
        }
        let ours = walk_ours(&m);
        assert_eq!(ours, walk_prost(&m), "case {case}: {m:02x?}");
        if let Some(e) = &ours.1 {
            malformed += 1;
            // The kind of refusal, without the value it names.
            refusals.insert(e.split(": ").take(2).collect::<Vec<_>>().join(": "));
        }
        // Nested messages too, where a payload holds one.
        for (_, wire, payload, _) in &ours.0 {
            if *wire == 2 {
                assert_eq!(walk_ours(payload), walk_prost(payload), "case {case}");
            }
        }
    }
    // Both sides of the comparison are exercised.
    assert!(
        (5_000..15_000).contains(&malformed),
        "{malformed} malformed"
    );
    assert_eq!(refusals.len(), 6, "{refusals:?}");
}
