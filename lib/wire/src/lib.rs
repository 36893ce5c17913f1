//! Reads the protobuf wire format in place, without decoding into structs or allocating.
//!
//! Both sides of Sluice walk OTLP protobuf without decoding it: the gateway's scan validates
//! every request and counts its records, its cost walk estimates what decoding would take, and
//! the plugin SDK's views and wire-level rewrites lend out slices of a batch. They read the
//! same format with this one reader, so that a malformed varint, key or length means the same
//! thing to each of them, and means what it means to prost's decoder.
//!
//! Bytes enter as a `&[u8]` holding one message; a [`Reader`] moves through it field by field
//! and hands out numbers and sub-slices of the input (a length-delimited payload is itself a
//! message to walk with a new `Reader`). For code that copies fields as they are,
//! [`fields`] iterates over each [`Field`] with its key, payload and encoded bytes.
//!
//! The reader accepts what prost accepts, except groups (wire types 3 and 4, deprecated since
//! proto2 and absent from OTLP and remote-write), which it refuses as [`Error::Group`]. It
//! knows no schema: whether field 2 of a message should be length-delimited is the caller's
//! question.
//!
//! The gateway reads every byte of every request through it, so the small reads (a varint, a
//! key, a length-delimited payload, skipping a value) are inlined into the caller's loop: a
//! one-byte varint costs a load and a comparison, and only longer ones call out. The scan
//! bench of `sluice-core` measures it.
//!
//! ```
//! use sluice_wire::{Reader, Value, WireType, encode_key, encode_varint};
//!
//! // A message with field 1 = 150 and field 2 = "hi".
//! let mut msg = Vec::new();
//! encode_key(1, WireType::Varint, &mut msg);
//! encode_varint(150, &mut msg);
//! encode_key(2, WireType::Len, &mut msg);
//! encode_varint(2, &mut msg);
//! msg.extend_from_slice(b"hi");
//!
//! let mut r = Reader::new(&msg);
//! assert_eq!(r.next_value(), Ok(Some((1, Value::Varint(150)))));
//! assert_eq!(r.next_value(), Ok(Some((2, Value::Len(&b"hi"[..])))));
//! assert_eq!(r.next_value(), Ok(None));
//! ```

use std::fmt;
use std::iter::FusedIterator;

/// How a field's value is encoded: the low three bits of its key (6 and 7 are not defined, and
/// a key with them is refused). Groups have keys but the reader refuses their values: see
/// [`Error::Group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WireType {
    /// A base-128 varint: integers, enums, booleans.
    Varint = 0,
    /// Eight little-endian bytes: `fixed64`, `sfixed64`, `double`.
    Fixed64 = 1,
    /// A varint length, then that many bytes: strings, bytes, messages, packed numbers.
    Len = 2,
    /// The start of a group (proto2's deprecated nested message without a length).
    StartGroup = 3,
    /// The end of a group.
    EndGroup = 4,
    /// Four little-endian bytes: `fixed32`, `sfixed32`, `float`.
    Fixed32 = 5,
}

/// Why bytes are not the wire format. The texts are prost's where prost has one, so that a
/// message reads the same whichever of the two read the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A varint ends with the bytes, runs past ten bytes, or overflows 64 bits.
    Varint,
    /// A key beyond 32 bits.
    Key(u64),
    /// A key with wire type 6 or 7, which protobuf does not define.
    WireType(u8),
    /// A key with field number 0.
    FieldZero,
    /// A value of a group (wire type 3 or 4): groups are deprecated since proto2 and absent
    /// from OTLP and remote-write, and a group has no length to skip it by.
    Group,
    /// A length-delimited or fixed-width value runs past the end of its message.
    Truncated,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Varint => f.write_str("invalid varint"),
            Error::Key(key) => write!(f, "invalid key value: {key}"),
            Error::WireType(value) => write!(f, "invalid wire type value: {value}"),
            Error::FieldZero => f.write_str("invalid tag value: 0"),
            Error::Group => f.write_str("groups are not supported"),
            Error::Truncated => f.write_str("a field runs past the end of its message"),
        }
    }
}

impl std::error::Error for Error {}

/// A field's value as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    /// A length-delimited payload, without its length.
    Len(&'a [u8]),
    Fixed32(u32),
}

impl Value<'_> {
    pub fn wire_type(&self) -> WireType {
        match self {
            Value::Varint(_) => WireType::Varint,
            Value::Fixed64(_) => WireType::Fixed64,
            Value::Len(_) => WireType::Len,
            Value::Fixed32(_) => WireType::Fixed32,
        }
    }
}

/// One field as it is encoded, for code that copies fields or reads their payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u32,
    pub wire_type: WireType,
    /// A length-delimited field's payload (without its length), or the four or eight bytes of
    /// a fixed-width value; empty for a varint (read its value with [`Reader::next_value`]).
    pub payload: &'a [u8],
    /// The whole field, key included: copy it to keep the field as it came.
    pub raw: &'a [u8],
}

/// A cursor over one message's bytes.
///
/// Every read either moves past what it read or fails; after a failure the position is
/// unspecified and the message is to be given up. Sub-slices handed out borrow from the input,
/// not from the reader.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Whether every byte has been read: the message ends here.
    #[inline]
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// How many bytes have been read.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// A base-128 varint of up to ten bytes.
    #[inline(always)]
    pub fn varint(&mut self) -> Result<u64, Error> {
        // Keys of fields 1 to 15, lengths of short strings and small numbers fit in one byte:
        // most varints of a message, so they skip the loop.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_slow().ok_or(Error::Varint)
    }

    /// A varint of any length. Usually left out of line by the compiler; `#[inline]` still
    /// compiles it into the calling crate, which then calls it directly rather than through
    /// the global offset table (the scan bench of `sluice-core` runs measurably faster so).
    /// `None` rather than an [`Error`] returns in registers.
    #[inline]
    fn varint_slow(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            // The tenth byte holds the 64th bit only.
            if i == 9 && b > 1 {
                return None;
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// The next field's number and wire type. Refuses, in prost's order, a key beyond 32 bits,
    /// wire types 6 and 7, and field number 0.
    #[inline(always)]
    pub fn key(&mut self) -> Result<(u32, WireType), Error> {
        let key = self.varint()?;
        // Free after a one-byte varint, which cannot exceed it.
        if key > u64::from(u32::MAX) {
            return Err(refused(key));
        }
        let wire = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            _ => return Err(refused(key)),
        };
        let number = (key >> 3) as u32;
        if number == 0 {
            return Err(refused(key));
        }
        Ok((number, wire))
    }

    /// The next `n` bytes.
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() - self.pos < n {
            return Err(Error::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..self.pos])
    }

    /// A length-delimited payload: a varint length, then that many bytes.
    #[inline(always)]
    pub fn bytes(&mut self) -> Result<&'a [u8], Error> {
        // A length beyond the address space is beyond the buffer too.
        let len = usize::try_from(self.varint()?).map_err(|_| Error::Truncated)?;
        self.take(len)
    }

    /// Eight little-endian bytes.
    #[inline]
    pub fn fixed64(&mut self) -> Result<u64, Error> {
        let le = <[u8; 8]>::try_from(self.take(8)?).map_err(|_| Error::Truncated)?;
        Ok(u64::from_le_bytes(le))
    }

    /// Four little-endian bytes.
    #[inline]
    pub fn fixed32(&mut self) -> Result<u32, Error> {
        let le = <[u8; 4]>::try_from(self.take(4)?).map_err(|_| Error::Truncated)?;
        Ok(u32::from_le_bytes(le))
    }

    /// Moves past a value of wire type `wire` (an unknown field's, or one not wanted).
    #[inline(always)]
    pub fn skip(&mut self, wire: WireType) -> Result<(), Error> {
        match wire {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8).map(drop),
            WireType::Len => self.bytes().map(drop),
            WireType::Fixed32 => self.take(4).map(drop),
            WireType::StartGroup | WireType::EndGroup => Err(Error::Group),
        }
    }

    /// A value of wire type `wire`; a group's is refused.
    #[inline]
    pub fn value(&mut self, wire: WireType) -> Result<Value<'a>, Error> {
        Ok(match wire {
            WireType::Varint => Value::Varint(self.varint()?),
            WireType::Fixed64 => Value::Fixed64(self.fixed64()?),
            WireType::Len => Value::Len(self.bytes()?),
            WireType::Fixed32 => Value::Fixed32(self.fixed32()?),
            WireType::StartGroup | WireType::EndGroup => return Err(Error::Group),
        })
    }

    /// The next field's number and value, or `None` at the end of the message.
    #[inline]
    pub fn next_value(&mut self) -> Result<Option<(u32, Value<'a>)>, Error> {
        if self.at_end() {
            return Ok(None);
        }
        let (number, wire) = self.key()?;
        Ok(Some((number, self.value(wire)?)))
    }

    /// The next field as it is encoded, or `None` at the end of the message.
    #[inline]
    pub fn next_field(&mut self) -> Result<Option<Field<'a>>, Error> {
        if self.at_end() {
            return Ok(None);
        }
        let start = self.pos;
        let (number, wire_type) = self.key()?;
        let payload = match wire_type {
            WireType::Varint => {
                self.varint()?;
                &[]
            }
            WireType::Fixed64 => self.take(8)?,
            WireType::Len => self.bytes()?,
            WireType::Fixed32 => self.take(4)?,
            WireType::StartGroup | WireType::EndGroup => return Err(Error::Group),
        };
        Ok(Some(Field {
            number,
            wire_type,
            payload,
            raw: &self.buf[start..self.pos],
        }))
    }
}

/// Why a key is refused, checked in prost's order: its size, its wire type, its field number.
/// Out of line: a good key costs [`Reader::key`] a comparison or two.
#[cold]
#[inline(never)]
fn refused(key: u64) -> Error {
    if key > u64::from(u32::MAX) {
        Error::Key(key)
    } else if key & 7 >= 6 {
        Error::WireType((key & 7) as u8)
    } else {
        Error::FieldZero
    }
}

/// Every field of the message `buf`, in order. A malformed field is the last item: the
/// iterator ends after it.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields {
        reader: Reader::new(buf),
        failed: false,
    }
}

/// The iterator of [`fields`].
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.reader.next_field() {
            Ok(field) => field.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for Fields<'_> {}

/// Appends `value` as a base-128 varint (one to ten bytes).
#[inline]
pub fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends the key of field `number` (1 to 2^29 - 1) with wire type `wire`.
#[inline]
pub fn encode_key(number: u32, wire: WireType, out: &mut Vec<u8>) {
    debug_assert!((1..1 << 29).contains(&number), "field number {number}");
    encode_varint((u64::from(number) << 3) | wire as u64, out);
}

#[cfg(test)]
mod tests;
