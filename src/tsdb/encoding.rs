//! Primitive encodings of the TSDB formats: Go-style varints, big-endian integers and CRC32C.
//!
//! [`Decbuf`] is a bounds-checked cursor over borrowed bytes: every getter returns a
//! [`DecodeError`] on short or malformed input instead of panicking, so the format readers built
//! on it never panic on hostile bytes. [`Encbuf`] is its appending counterpart for the writers.

use thiserror::Error;

/// Why a byte sequence could not be decoded. Carries no location: the section readers add
/// the file and offset when they wrap it into their own error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("unexpected end of data: needed {needed} bytes, {available} left")]
    ShortRead { needed: usize, available: usize },
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    #[error("value {value} does not fit {target}")]
    OutOfRange { value: u64, target: &'static str },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("invalid UTF-8 in string")]
    Utf8,
    #[error("{0}")]
    Invalid(String),
}

/// CRC32 with the Castagnoli polynomial, as used by every TSDB section.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continues `crc` (a [`crc32c`] of the bytes before) over `data`, for content written in pieces.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// Checks that `stored` is the CRC32C of `data`.
pub fn verify_crc32c(data: &[u8], stored: u32) -> Result<(), DecodeError> {
    let computed = crc32c(data);
    if computed == stored {
        Ok(())
    } else {
        Err(DecodeError::Checksum { stored, computed })
    }
}

/// Zigzag-decodes a Go `binary.Varint` value.
#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Zigzag-encodes a value for Go's `binary.PutVarint`.
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Decodes a uvarint at the start of `b`: the value and the number of bytes it used.
#[inline]
pub fn read_uvarint(b: &[u8]) -> Result<(u64, usize), DecodeError> {
    let mut value = 0u64;
    let mut shift = 0u32;
    for (i, &byte) in b.iter().enumerate() {
        if i == 10 || (i == 9 && byte > 1) {
            return Err(DecodeError::VarintOverflow);
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok((value, i + 1));
        }
        shift += 7;
    }
    Err(DecodeError::ShortRead {
        needed: b.len() + 1,
        available: b.len(),
    })
}

/// A bounds-checked reading cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Decbuf<'a> {
    buf: &'a [u8],
}

impl<'a> Decbuf<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decbuf { buf }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::ShortRead {
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.bytes(n).map(|_| ())
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn be32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn be64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    #[inline]
    pub fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let (v, n) = read_uvarint(self.buf)?;
        self.buf = &self.buf[n..];
        Ok(v)
    }

    #[inline]
    pub fn varint(&mut self) -> Result<i64, DecodeError> {
        self.uvarint().map(unzigzag)
    }

    /// A uvarint that must fit in 32 bits.
    pub fn uvarint32(&mut self) -> Result<u32, DecodeError> {
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| DecodeError::OutOfRange {
            value: v,
            target: "u32",
        })
    }

    /// A uvarint that is used as a length or count in memory.
    pub fn uvarint_usize(&mut self) -> Result<usize, DecodeError> {
        let v = self.uvarint()?;
        usize::try_from(v).map_err(|_| DecodeError::OutOfRange {
            value: v,
            target: "usize",
        })
    }

    /// A uvarint length followed by that many bytes.
    pub fn uvarint_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uvarint_usize()?;
        self.bytes(n)
    }

    /// A uvarint length followed by that many bytes of UTF-8.
    pub fn uvarint_str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.uvarint_bytes()?).map_err(|_| DecodeError::Utf8)
    }
}

/// An appending buffer for the writers.
#[derive(Debug, Default, Clone)]
pub struct Encbuf {
    pub buf: Vec<u8>,
}

impl Encbuf {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Encbuf {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn clear(&mut self) {
        self.buf.clear()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v)
    }

    pub fn put_be32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes())
    }

    pub fn put_be64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes())
    }

    #[inline]
    pub fn put_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    #[inline]
    pub fn put_varint(&mut self, v: i64) {
        self.put_uvarint(zigzag(v))
    }

    pub fn put_bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b)
    }

    pub fn put_uvarint_bytes(&mut self, b: &[u8]) {
        self.put_uvarint(b.len() as u64);
        self.put_bytes(b);
    }

    /// Appends the CRC32C of the bytes from `start` to the end.
    pub fn put_crc32c_from(&mut self, start: usize) {
        let crc = crc32c(&self.buf[start..]);
        self.put_be32(crc);
    }
}

/// Number of bytes the uvarint encoding of `v` takes.
pub fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn uvarint_round_trip(v: u64) {
            let mut e = Encbuf::new();
            e.put_uvarint(v);
            prop_assert_eq!(e.len(), uvarint_len(v));
            let mut d = Decbuf::new(e.as_slice());
            prop_assert_eq!(d.uvarint().unwrap(), v);
            prop_assert!(d.is_empty());
        }

        #[test]
        fn varint_round_trip(v: i64) {
            let mut e = Encbuf::new();
            e.put_varint(v);
            let mut d = Decbuf::new(e.as_slice());
            prop_assert_eq!(d.varint().unwrap(), v);
        }

        #[test]
        fn decoding_garbage_never_panics(data: Vec<u8>) {
            let mut d = Decbuf::new(&data);
            while !d.is_empty() {
                if d.uvarint().is_err() { break; }
            }
            let mut d = Decbuf::new(&data);
            let _ = d.uvarint_str();
            let _ = d.be64();
        }

        #[test]
        fn crc_detects_single_bit_flips(data in proptest::collection::vec(any::<u8>(), 1..256), bit in 0usize..2048) {
            let crc = crc32c(&data);
            let mut flipped = data.clone();
            let bit = bit % (data.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_crc32c(&flipped, crc).is_err());
            prop_assert!(verify_crc32c(&data, crc).is_ok());
        }
    }

    #[test]
    fn known_varints() {
        // Values checked against Go's encoding/binary.
        let mut e = Encbuf::new();
        e.put_uvarint(300);
        assert_eq!(e.as_slice(), &[0xac, 0x02]);
        e.clear();
        e.put_varint(-1);
        assert_eq!(e.as_slice(), &[0x01]);
        e.clear();
        e.put_varint(1);
        assert_eq!(e.as_slice(), &[0x02]);
        // Castagnoli check value for "123456789".
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let data = [0xffu8; 11];
        assert_eq!(read_uvarint(&data), Err(DecodeError::VarintOverflow));
        assert!(matches!(
            read_uvarint(&[0x80, 0x80]),
            Err(DecodeError::ShortRead { .. })
        ));
    }
}
