//! The XOR chunk codec: Prometheus' variant of Facebook's Gorilla compression.
//!
//! Pure functions over byte slices, no I/O. The layout (bits MSB-first):
//!
//! ```text
//! u16be count | varint t0 | 64 bits v0 | uvarint (t1-t0) | xor(v1) | { dod(tn) | xor(vn) }* | zero pad
//! dod:  0 | 10 +14 bits | 110 +17 bits | 1110 +20 bits | 1111 +64 bits   (two's complement fields)
//! xor:  0 (same value) | 10 + bits in the previous window | 11 + 5 bits leading + 6 bits length + bits
//! ```
//!
//! Everything up to and including `t1 - t0` is byte aligned, so the decoder reads it with the
//! byte-level varint helpers and only switches to its bit reader for the value of sample 1.
//! Arithmetic on timestamps wraps exactly like Go's so that any `i64` sequence round-trips and
//! the bytes match what Prometheus writes.

use crate::tsdb::encoding::{read_uvarint, unzigzag, zigzag, DecodeError};

/// Most samples one XOR chunk can hold: the count is a u16.
pub const MAX_SAMPLES: u16 = u16::MAX;

/// Whether `dod` fits an `nbits` two's-complement field the way Prometheus decides it.
///
/// The range is `-(2^(n-1) - 1) ..= 2^(n-1)`, not the usual `-2^(n-1) .. 2^(n-1)`: the decoder
/// maps the raw value `2^(n-1)` to a positive number, so the encoder must match to be
/// byte-compatible.
#[inline]
fn fits_bits(dod: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= dod && dod <= half
}

/// Appends samples to an XOR chunk.
///
/// The sample count in the first two bytes is kept current, so [`XorEncoder::bytes`] is a valid
/// chunk after every append.
#[derive(Debug, Clone)]
pub struct XorEncoder {
    buf: Vec<u8>,
    /// Unused low bits of the last byte of `buf` (0 when byte aligned).
    free: u32,
    num: u16,
    t: i64,
    t_delta: u64,
    v: u64,
    /// Current XOR window; `leading == 0xff` means "no window yet".
    leading: u8,
    trailing: u8,
}

impl Default for XorEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl XorEncoder {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&[0, 0]);
        XorEncoder {
            buf,
            free: 0,
            num: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0xff,
            trailing: 0,
        }
    }

    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// True when another append would overflow the u16 sample count.
    pub fn is_full(&self) -> bool {
        self.num == MAX_SAMPLES
    }

    /// The encoded chunk so far (a complete, valid chunk).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Appends a sample. Timestamps need not increase (deltas wrap like Go's), values are kept
    /// bit-exactly.
    ///
    /// # Panics
    /// If the chunk already holds [`MAX_SAMPLES`] samples (check [`XorEncoder::is_full`]): the
    /// count would wrap and silently corrupt the chunk.
    pub fn append(&mut self, t: i64, v: f64) {
        assert!(!self.is_full(), "XOR chunk is full ({MAX_SAMPLES} samples)");
        let vbits = v.to_bits();
        match self.num {
            0 => {
                self.put_uvarint(zigzag(t));
                self.write_bits(vbits, 64);
            }
            1 => {
                self.t_delta = t.wrapping_sub(self.t) as u64;
                self.put_uvarint(self.t_delta);
                self.write_value(vbits);
            }
            _ => {
                let t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.write_bits(0, 1);
                } else if fits_bits(dod, 14) {
                    self.write_bits((0b10 << 14) | (dod as u64 & 0x3fff), 16);
                } else if fits_bits(dod, 17) {
                    self.write_bits((0b110 << 17) | (dod as u64 & 0x1_ffff), 20);
                } else if fits_bits(dod, 20) {
                    self.write_bits((0b1110 << 20) | (dod as u64 & 0xf_ffff), 24);
                } else {
                    self.write_bits(0b1111, 4);
                    self.write_bits(dod as u64, 64);
                }
                self.t_delta = t_delta;
                self.write_value(vbits);
            }
        }
        self.t = t;
        self.v = vbits;
        self.num += 1;
        let [hi, lo] = self.num.to_be_bytes();
        if let [a, b, ..] = self.buf.as_mut_slice() {
            *a = hi;
            *b = lo;
        }
    }

    fn write_value(&mut self, vbits: u64) {
        let delta = vbits ^ self.v;
        if delta == 0 {
            self.write_bits(0, 1);
            return;
        }
        // Leading zeros are clamped to 31 so they fit the 5-bit field.
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            // '10': the delta fits the previous window.
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.write_bits(0b10, 2);
            self.write_bits(delta >> self.trailing, sig);
        } else {
            // '11': new window. 64 significant bits are written as 0 (6-bit field); 0 never
            // occurs otherwise because a zero delta takes the '0' branch.
            self.leading = leading;
            self.trailing = trailing;
            let sig = 64 - u32::from(leading) - u32::from(trailing);
            let header = (0b11 << 11) | (u64::from(leading) << 6) | u64::from(sig & 0x3f);
            self.write_bits(header, 13);
            self.write_bits(delta >> trailing, sig);
        }
    }

    /// Byte-aligned uvarint (only used for the first two samples, which are always aligned).
    fn put_uvarint(&mut self, mut v: u64) {
        debug_assert_eq!(self.free, 0);
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// Writes the low `n` bits of `v` (1 <= n <= 64), most significant first.
    #[inline]
    fn write_bits(&mut self, v: u64, mut n: u32) {
        debug_assert!((1..=64).contains(&n));
        if self.free > 0 {
            let take = n.min(self.free);
            // The top `take` of the `n` bits, placed just below the bits already used.
            let bits = ((v >> (n - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= bits << (self.free - take);
            }
            self.free -= take;
            n -= take;
        }
        while n >= 8 {
            n -= 8;
            self.buf.push((v >> n) as u8);
        }
        if n > 0 {
            self.buf.push((v << (8 - n)) as u8);
            self.free = 8 - n;
        }
    }

    #[cfg(test)]
    fn bit_len(&self) -> usize {
        self.buf.len() * 8 - self.free as usize
    }
}

/// Widest value window (significant bits) for which one refill serves a whole sample with a
/// '0' or '10' + 14 bits delta-of-delta: 16 + 2 + 38 <= 56.
const NARROW_SIG: u32 = 38;

/// A window whose top two bits are '11': a new value window, or a delta-of-delta wider than
/// '10' + 14 bits.
const NEW_OR_WIDE: u64 = 0xc000_0000_0000_0000;

/// More bytes than any XOR chunk can use: 65535 samples of at most 4 + 64 + 13 + 64 bits each
/// after a short header. The decoder ignores what follows, like any trailing bytes.
const MAX_DATA: usize = 1 << 24;

/// Iterates over the samples of an XOR chunk.
///
/// Like Prometheus' iterator, it stops at the first problem and keeps the error ([`XorIter::err`]):
/// data ending before the sample count is reached, an over-long varint, or an impossible value
/// window. It never panics and never reads outside `data`.
///
/// Speed: the bit reader keeps up to 64 unread bits left-aligned in a `u64` and refills it with
/// one 8-byte big-endian load (the last word, shifted, near the end of the data), so a typical
/// sample costs a refill, a few shifts and masks and a few well-predicted branches; see
/// [`State::step`]. Reading past the end only ever yields zero bits and is caught once per
/// sample, and only once a load went past the end.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    st: State<'a>,
    /// Sample count from the header.
    count: u16,
    /// Samples not decoded yet (0 after an error).
    left: u16,
    /// Samples 0 and 1 (byte aligned) decoded so far, up to 2.
    head: u8,
    err: Option<DecodeError>,
}

/// The bit reader and the decoded state: plain `Copy` data, so a loop can work on a local copy
/// that lives entirely in registers.
#[derive(Debug, Clone, Copy)]
struct State<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load into `window`. `data` is at most [`MAX_DATA`] bytes, so this
    /// fits, and `pos + 8` cannot overflow a `usize`.
    pos: u32,
    /// Unread bits, left-aligned. Bits below the `avail` valid ones are either zero or the
    /// stream bits that follow (the refill ORs the same bits in again).
    window: u64,
    avail: u32,
    t: i64,
    t_delta: u64,
    v: u64,
    /// Current value window: trailing zeros and significant bits (initially 0 and 64).
    trailing: u32,
    sig: u32,
}

impl<'a> XorIter<'a> {
    /// Starts iterating over a chunk; fails only if the 2-byte sample count is missing.
    pub fn new(data: &'a [u8]) -> Result<Self, DecodeError> {
        let Some(&[hi, lo]) = data.first_chunk::<2>() else {
            return Err(DecodeError::ShortRead {
                needed: 2,
                available: data.len(),
            });
        };
        // Longer data cannot matter: see `MAX_DATA`.
        let data = data.get(..MAX_DATA).unwrap_or(data);
        Ok(XorIter {
            st: State {
                data,
                pos: 2,
                window: 0,
                avail: 0,
                t: 0,
                t_delta: 0,
                v: 0,
                trailing: 0,
                sig: 64,
            },
            count: u16::from_be_bytes([hi, lo]),
            left: u16::from_be_bytes([hi, lo]),
            head: 0,
            err: None,
        })
    }

    /// The sample count stored in the chunk header (the data may hold fewer if corrupt).
    pub fn num_samples(&self) -> u16 {
        self.count
    }

    /// The error that stopped the iteration early, if any.
    pub fn err(&self) -> Option<&DecodeError> {
        self.err.as_ref()
    }

    /// Records a sticky error and ends the iteration.
    #[inline(always)]
    fn fail(&mut self, e: DecodeError) -> Option<(i64, f64)> {
        self.err.get_or_insert(e);
        self.left = 0;
        None
    }

    /// Sample 0: varint timestamp and raw value bits, byte aligned.
    #[inline(always)]
    fn next_first(&mut self) -> Option<(i64, f64)> {
        match first_sample(self.st.data, self.st.pos as usize) {
            Ok((t, v, pos)) => {
                self.st.t = t;
                self.st.v = v;
                // `pos <= data.len() <= MAX_DATA`.
                self.st.pos = pos as u32;
                self.head = 1;
                self.left -= 1;
                Some((t, f64::from_bits(v)))
            }
            Err(e) => self.fail(e),
        }
    }
}

// Performance note: nothing on the per-sample path may pass the state by reference to a
// function that is not inlined. That would make its address escape and force every field
// through memory on every sample; the cold helpers take plain values instead.
impl State<'_> {
    /// Ensures at least 56 bits are in the window.
    #[inline(always)]
    fn refill(&mut self) {
        let pos = self.pos as usize;
        let word = match self.data.get(pos..pos + 8) {
            Some(&[a, b, c, d, e, f, g, h]) => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
            _ => match self.data.last_chunk::<8>() {
                // Byte `pos` is one of the last 8: the last word, shifted.
                Some(last) if pos < self.data.len() => {
                    u64::from_be_bytes(*last) << (8 * (pos + 8 - self.data.len()))
                }
                _ => tail_word(self.data, pos),
            },
        };
        self.window |= word >> self.avail;
        // Whole bytes that fitted; `avail <= 63`.
        self.pos += (!self.avail & 63) >> 3;
        self.avail |= 56;
    }

    /// Drops `n` (< 64) bits from the window; the caller made sure they are there.
    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.window <<= n;
        self.avail -= n;
    }

    /// Reads `n` bits, 1 <= n <= 56.
    #[inline(always)]
    fn read_bits(&mut self, n: u32) -> u64 {
        if self.avail < n {
            self.refill();
        }
        let v = self.window >> (64 - n);
        self.consume(n);
        v
    }

    /// Reads `n` bits, 1 <= n <= 64.
    #[inline(always)]
    fn read_bits_wide(&mut self, n: u32) -> u64 {
        if n <= 56 {
            self.read_bits(n)
        } else {
            let hi = self.read_bits(n - 32);
            (hi << 32) | self.read_bits(32)
        }
    }

    /// Bits consumed so far, counted from the start of `data`.
    #[inline(always)]
    fn consumed_bits(&self) -> u64 {
        u64::from(self.pos) * 8 - u64::from(self.avail)
    }

    /// Decodes the XOR-encoded value that follows, updating `self.v`. On an impossible window
    /// returns its (leading zeros, significant bits).
    #[inline(always)]
    fn read_value(&mut self) -> Result<(), (u32, u32)> {
        if self.avail < 13 {
            self.refill();
        }
        let w = self.window;
        if w >> 63 == 0 {
            self.consume(1);
            return Ok(());
        }
        if (w >> 62) & 1 == 0 {
            self.consume(2);
        } else {
            let leading = ((w >> 57) & 0x1f) as u32;
            let sig = ((w >> 51) & 0x3f) as u32;
            self.consume(13);
            // 0 stands for 64 (the field has 6 bits); a new window always has >= 1 bit.
            let sig = if sig == 0 { 64 } else { sig };
            if leading + sig > 64 {
                return Err((leading, sig));
            }
            self.sig = sig;
            self.trailing = 64 - leading - sig;
        }
        let bits = self.read_bits_wide(self.sig);
        self.v ^= bits << self.trailing;
        Ok(())
    }

    /// The delta-of-delta that follows.
    #[inline(always)]
    fn read_dod(&mut self) -> i64 {
        if self.avail < 24 {
            self.refill();
        }
        let w = self.window;
        if w >> 63 == 0 {
            self.consume(1);
            return 0;
        }
        // The run of 1-bits (up to four) selects the field width. Prefix plus field is at
        // most 24 bits, so it is in the window already.
        let (len, width) = match (!w).leading_zeros() {
            1 => (16, 14),
            2 => (20, 17),
            3 => (24, 20),
            _ => {
                self.consume(4);
                return self.read_bits_wide(64) as i64;
            }
        };
        self.consume(len);
        let raw = (w << (len - width)) >> (64 - width);
        // Two's complement, except that 2^(width-1) itself is positive (see `fits_bits`).
        if raw > 1 << (width - 1) {
            raw as i64 - (1 << width)
        } else {
            raw as i64
        }
    }

    /// Fails if the bits consumed so far run past the end of the data.
    #[inline(always)]
    fn check_end(&self) -> Result<(), DecodeError> {
        // Reading past the end only ever produced zero bits; catch it once per sample.
        // Only a load from past the end (`pos > len`) can have put such bits in the window.
        if self.pos > self.data.len() as u32 {
            let consumed = self.consumed_bits();
            if consumed > (self.data.len() as u64) * 8 {
                return Err(short_read(consumed, self.data.len()));
            }
        }
        Ok(())
    }

    /// Decodes one sample after the second, failing on an impossible window or at the end of
    /// the data.
    #[inline(always)]
    fn step_checked(&mut self) -> Result<(), DecodeError> {
        self.step().map_err(bad_window)?;
        self.check_end()
    }

    /// Decodes one sample after the second (timestamp and value), without the end check.
    ///
    /// Real chunks mostly hold samples with a delta-of-delta of '0' or '10' + 14 bits (regular
    /// scrapes, some jitter) and a value of '0' (unchanged), '10' + bits in the current window
    /// or '11' + a new window. Which one comes next is random, so branching on it costs
    /// mispredictions; how they are decoded depends on the current value window, which
    /// changes rarely, so branching on that is cheap:
    /// - a narrow window (at most 38 bits, counters): one refill serves the whole sample
    ///   (16 + 2 + 38 <= 56 bits), which is decoded without a branch unless it opens a new
    ///   window or has a wider delta-of-delta;
    /// - otherwise (gauges' wide windows, constants that never opened one) the well-predicted
    ///   branches below do better: a value that takes 40 to 64 bits needs a second refill
    ///   anyway, and a constant's '0' '0' samples are cheapest on their own path.
    #[inline(always)]
    fn step(&mut self) -> Result<(), (u32, u32)> {
        if self.sig <= NARROW_SIG {
            self.refill();
            let w = self.window;
            if w >= 0xc000_0000_0000_0000 {
                return self.step_general();
            }
            let dlen = self.dod_fast(w);
            let w = w << dlen;
            if w >= 0xc000_0000_0000_0000 {
                // '11': a new window.
                self.consume(dlen);
                return self.read_value();
            }
            // '10' (m all ones) or '0' (m zero: the value is unchanged). The shift keeps the
            // bit after the '1' of '10', which is 0, above the sig value bits.
            let m = ((w as i64) >> 63) as u64;
            let bits = ((w << 1) >> (63 - self.sig)) & m;
            self.consume(dlen + 1 + (m as u32 & (self.sig + 1)));
            self.v ^= bits << self.trailing;
            return Ok(());
        }
        self.step_wide()
    }

    /// [`State::step`] for a window wider than [`NARROW_SIG`] bits, or none yet.
    #[inline(always)]
    fn step_wide(&mut self) -> Result<(), (u32, u32)> {
        if self.avail < 24 {
            self.refill();
        }
        let w = self.window;
        let top3 = w >> 61;
        if top3 < 0b010 {
            // '0' '0': same interval and same value, the most common sample of all.
            self.consume(2);
            self.t = self.t.wrapping_add(self.t_delta as i64);
            return Ok(());
        }
        if top3 == 0b010 && self.sig + 3 <= self.avail {
            // '0' '10' + sig bits: same interval, value in the previous window (a counter's
            // usual sample). The whole sample is in the window: one shift for all of it.
            // 3 + sig <= avail <= 63, so both shifts are in range.
            let bits = (w << 3) >> (64 - self.sig);
            self.consume(3 + self.sig);
            self.v ^= bits << self.trailing;
            self.t = self.t.wrapping_add(self.t_delta as i64);
            return Ok(());
        }
        self.step_general()
    }

    /// Decodes samples for as long as each is a narrow-window counter sample that needs no
    /// bounds check: the value window has at most [`NARROW_SIG`] bits before and after it, the
    /// delta-of-delta is '0' or '10' + 14 bits, and 8 bytes can be loaded at `pos`. Passes each
    /// sample to `f` and counts `left` down; stops before any other sample (a wider
    /// delta-of-delta, a new window that is wide or invalid, the chunk's last 8 bytes), leaving
    /// it to [`State::step`].
    ///
    /// Cheaper than the same samples in [`State::step`]: the load's bounds check is the only
    /// one (every bit consumed was loaded from inside the data, so there is no end check), a
    /// narrow new window ('11', 15% of counter samples) is decoded in the loop rather than by
    /// the general reader, and the loop's state is its own locals.
    #[inline(always)]
    fn run_narrow<B>(
        &mut self,
        left: &mut u16,
        mut acc: B,
        f: &mut impl FnMut(B, (i64, f64)) -> B,
    ) -> B {
        // Plain locals, written back at the end: a loop of its own over few values gets
        // registers of its own instead of shuffles between the outer loop's.
        let start = self.data.as_ptr();
        // The last place an 8-byte load may start: the loop reads through a pointer `p` that
        // it keeps at or before it (one register for the position and the bounds check, where
        // a slice and an index take three).
        let Some(last_load) = self.data.len().checked_sub(8) else {
            return acc;
        };
        let last_load = start.wrapping_add(last_load);
        // `pos` may be past the end here (the last refill of `step`); then `p` is past
        // `last_load` and the loop does not start.
        let mut p = start.wrapping_add(self.pos as usize);
        let (mut window, mut avail) = (self.window, self.avail);
        let (mut t, mut t_delta, mut v) = (self.t, self.t_delta, self.v);
        let (mut sig, mut trailing) = (self.sig, self.trailing);
        let mut n_left = *left;
        while n_left > 0 && p <= last_load {
            // SAFETY: `start <= p <= last_load = start + data.len() - 8` (`p` starts at or after
            // `start` and only grows), so the 8 bytes at `p` are inside `data`; `[u8; 8]` has
            // no alignment requirement beyond 1.
            let bytes = unsafe { p.cast::<[u8; 8]>().read() };
            let w = window | (u64::from_be_bytes(bytes) >> avail);
            if w >= NEW_OR_WIDE {
                break;
            }
            let dod_set = ((w as i64) >> 63) as u64;
            let dlen = 1 + (dod_set as u32 & 15);
            let vw = w << dlen;
            // Compared the same way as `w` above, so both use one constant.
            let n = if vw >= NEW_OR_WIDE {
                // '11': a new window, decoded here when it is narrow too (and valid) and the
                // whole sample is in the window; otherwise left to `step`.
                let new_leading = (vw >> 57) as u32 & 0x1f;
                let new_sig = (vw >> 51) as u32 & 0x3f;
                // `new_sig - 1` wraps for 0, which stands for 64.
                if new_sig.wrapping_sub(1) >= NARROW_SIG
                    || new_leading + new_sig > 64
                    || dlen + 13 + new_sig > 56
                {
                    break;
                }
                sig = new_sig;
                trailing = 64 - new_leading - new_sig;
                v ^= ((vw << 13) >> (64 - sig)) << trailing;
                dlen + 13 + sig
            } else {
                // As in `step`: '10' (m all ones) or '0' (m zero).
                let m = ((vw as i64) >> 63) as u64;
                let bits = ((vw << 1) >> (63 - sig)) & m;
                v ^= bits << trailing;
                dlen + 1 + (m as u32 & (sig + 1))
            };
            // See `dod_fast`.
            let dod = ((((w << 2).wrapping_sub(1 << 50)) as i64 >> 50) + 1) as u64 & dod_set;
            t_delta = t_delta.wrapping_add(dod);
            t = t.wrapping_add(t_delta as i64);
            // The refill (see `refill`), then the sample's `n <= 56` bits consumed.
            p = p.wrapping_add(((avail ^ 63) >> 3) as usize);
            window = w << n;
            avail = (avail | 56) - n;
            n_left -= 1;
            acc = f(acc, (t, f64::from_bits(v)));
        }
        // `p` only grew by whole bytes loaded from `data`, so it is at most `data.len()` past
        // `start` (or unchanged): the offset fits a u32 like `pos`.
        self.pos = (p as usize - start as usize) as u32;
        (self.window, self.avail) = (window, avail);
        (self.t, self.t_delta, self.v) = (t, t_delta, v);
        (self.sig, self.trailing) = (sig, trailing);
        *left = n_left;
        acc
    }

    /// Decodes a delta-of-delta of '0' or '10' + 14 bits at the top of `w` without a branch:
    /// updates the timestamp and returns its length.
    #[inline(always)]
    fn dod_fast(&mut self, w: u64) -> u32 {
        let b = (w as i64) >> 63;
        // The field is two's complement except that 2^13 itself is positive (see
        // `fits_bits`): sign-extend field - 1, then add 1. Masked to 0 for '0'.
        let dod = ((((w << 2).wrapping_sub(1 << 50)) as i64 >> 50) + 1) & b;
        self.t_delta = self.t_delta.wrapping_add(dod as u64);
        self.t = self.t.wrapping_add(self.t_delta as i64);
        1 + (b as u32 & 15)
    }

    /// Any sample, one field at a time.
    #[inline(always)]
    fn step_general(&mut self) -> Result<(), (u32, u32)> {
        let dod = self.read_dod();
        self.t_delta = self.t_delta.wrapping_add(dod as u64);
        self.t = self.t.wrapping_add(self.t_delta as i64);
        self.read_value()
    }
}

/// The bytes from `pos` on (fewer than 8), zero padded; past the end, all zeros. Only for data
/// shorter than 8 bytes or `pos` past its end: see [`State::refill`].
#[cold]
#[inline(never)]
fn tail_word(data: &[u8], pos: usize) -> u64 {
    let mut b = [0u8; 8];
    let rest = data.get(pos..).unwrap_or(&[]);
    let n = rest.len().min(8);
    if let (Some(dst), Some(src)) = (b.get_mut(..n), rest.get(..n)) {
        dst.copy_from_slice(src);
    }
    u64::from_be_bytes(b)
}

/// Decodes sample 0 at `pos`: (t, value bits, position after it).
#[cold]
#[inline(never)]
fn first_sample(data: &[u8], pos: usize) -> Result<(i64, u64, usize), DecodeError> {
    let rest = data.get(pos..).unwrap_or(&[]);
    let (t, n) = read_uvarint(rest)?;
    match rest.get(n..).and_then(<[u8]>::first_chunk::<8>) {
        Some(v) => Ok((unzigzag(t), u64::from_be_bytes(*v), pos + n + 8)),
        None => Err(DecodeError::ShortRead {
            needed: pos + n + 8,
            available: data.len(),
        }),
    }
}

/// The uvarint `t1 - t0` at `pos` and the position after it.
#[cold]
#[inline(never)]
fn second_delta(data: &[u8], pos: usize) -> Result<(u64, usize), DecodeError> {
    let (d, n) = read_uvarint(data.get(pos..).unwrap_or(&[]))?;
    Ok((d, pos + n))
}

#[cold]
#[inline(never)]
fn short_read(consumed_bits: u64, len: usize) -> DecodeError {
    DecodeError::ShortRead {
        needed: consumed_bits.div_ceil(8) as usize,
        available: len,
    }
}

#[cold]
#[inline(never)]
fn bad_window((leading, sig): (u32, u32)) -> DecodeError {
    DecodeError::Invalid(format!(
        "XOR value window of {leading} leading zeros and {sig} significant bits exceeds 64 bits"
    ))
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    // Always inlined: as a call, the decoder state would live in memory instead of registers,
    // which costs more than all the decoding (about twice the cycles per sample).
    #[inline(always)]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        if self.head < 2 {
            return self.next_head();
        }
        if let Err(e) = self.st.step_checked() {
            return self.fail(e);
        }
        self.left -= 1;
        Some((self.st.t, f64::from_bits(self.st.v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.left)))
    }

    /// The fast internal loop (see [`XorIter::for_each_sample`]); `count`, `for_each`, `sum`
    /// and adapters like `filter` and `map` over it use it too.
    fn fold<B, F>(mut self, init: B, f: F) -> B
    where
        F: FnMut(B, (i64, f64)) -> B,
    {
        self.decode_rest(init, f)
    }
}

impl XorIter<'_> {
    /// Calls `f` on every remaining sample, then returns the error that ended the decoding
    /// early, if any (also kept for [`XorIter::err`]).
    ///
    /// Faster than `next`: the loop keeps the whole decoder state in registers and, on x86-64
    /// CPUs with BMI2 (Intel since 2013, AMD since 2015), runs a copy compiled for them.
    pub fn for_each_sample(&mut self, mut f: impl FnMut(i64, f64)) -> Result<(), DecodeError> {
        self.decode_rest((), |(), (t, v)| f(t, v));
        match &self.err {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Folds the remaining samples with the fastest loop this CPU can run.
    fn decode_rest<B>(&mut self, init: B, f: impl FnMut(B, (i64, f64)) -> B) -> B {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("lzcnt")
        {
            // SAFETY: the CPU has the features `decode_rest_bmi2` is compiled for (std caches
            // the detection, so this costs a few loads per chunk).
            return unsafe { self.decode_rest_bmi2(init, f) };
        }
        self.decode_loop(init, f)
    }

    /// [`XorIter::decode_loop`] compiled with BMI2's flag-free variable shifts and `lzcnt`,
    /// which take 10-15% of the instructions off a sample.
    ///
    /// Safety: only call it on a CPU that has BMI1, BMI2 and LZCNT.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "bmi1,bmi2,lzcnt")]
    unsafe fn decode_rest_bmi2<B>(&mut self, init: B, f: impl FnMut(B, (i64, f64)) -> B) -> B {
        self.decode_loop(init, f)
    }

    #[inline(always)]
    fn decode_loop<B>(&mut self, mut acc: B, mut f: impl FnMut(B, (i64, f64)) -> B) -> B {
        while self.left > 0 && self.head < 2 {
            match self.next_head() {
                Some(s) => acc = f(acc, s),
                None => return acc,
            }
        }
        // A local copy, so that `f` cannot force the state into memory.
        let mut st = self.st;
        let mut left = self.left;
        while left > 0 {
            // The sample `run_narrow` stopped at, or any sample while the window is wide.
            let stepped = if st.sig <= NARROW_SIG {
                acc = st.run_narrow(&mut left, acc, &mut f);
                if left == 0 {
                    break;
                }
                st.step()
            } else {
                st.step_wide()
            };
            if let Err(e) = stepped.map_err(bad_window).and_then(|()| st.check_end()) {
                self.st = st;
                self.fail(e);
                return acc;
            }
            left -= 1;
            acc = f(acc, (st.t, f64::from_bits(st.v)));
        }
        self.st = st;
        self.left = 0;
        acc
    }

    /// Samples 0 and 1, which are byte aligned (`left > 0`, `head < 2`).
    #[inline(always)]
    fn next_head(&mut self) -> Option<(i64, f64)> {
        if self.head == 0 {
            return self.next_first();
        }
        // Sample 1: byte-aligned uvarint delta; the bit reader starts after it.
        match second_delta(self.st.data, self.st.pos as usize) {
            Ok((d, pos)) => {
                self.st.t_delta = d;
                // `pos <= data.len() <= MAX_DATA`.
                self.st.pos = pos as u32;
            }
            Err(e) => return self.fail(e),
        }
        self.st.t = self.st.t.wrapping_add(self.st.t_delta as i64);
        if let Err(w) = self.st.read_value() {
            return self.fail(bad_window(w));
        }
        if let Err(e) = self.st.check_end() {
            return self.fail(e);
        }
        self.head = 2;
        self.left -= 1;
        Some((self.st.t, f64::from_bits(self.st.v)))
    }
}

/// Decodes a whole XOR chunk, failing if it is malformed or shorter than its sample count says.
pub fn decode_xor(data: &[u8]) -> Result<Vec<(i64, f64)>, DecodeError> {
    let mut it = XorIter::new(data)?;
    let mut out = Vec::with_capacity(usize::from(it.num_samples()).min(data.len() * 8));
    it.for_each_sample(|t, v| out.push((t, v)))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn encode(samples: &[(i64, u64)]) -> Vec<u8> {
        let mut e = XorEncoder::new();
        for &(t, v) in samples {
            e.append(t, f64::from_bits(v));
        }
        e.into_bytes()
    }

    fn decode_bits(data: &[u8]) -> Result<Vec<(i64, u64)>, DecodeError> {
        Ok(decode_xor(data)?
            .into_iter()
            .map(|(t, v)| (t, v.to_bits()))
            .collect())
    }

    /// Everything the iterator yields, and whether it stopped on an error. The internal loop
    /// must agree with `next`: through `for_each_sample` (the CPU's fastest copy), `fold`, the
    /// portable copy, and after a few samples taken with `next`.
    fn decode_all(data: &[u8]) -> (Vec<(i64, u64)>, bool) {
        let Ok(mut it) = XorIter::new(data) else {
            return (Vec::new(), true);
        };
        let got: Vec<_> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        assert!(it.next().is_none(), "the iterator stays done");
        let failed = it.err().is_some();
        assert_eq!(failed, got.len() < usize::from(it.num_samples()));

        let push = |mut out: Vec<(i64, u64)>, (t, v): (i64, f64)| {
            out.push((t, v.to_bits()));
            out
        };
        let mut fast = XorIter::new(data).unwrap();
        let mut fast_got = Vec::new();
        let res = fast.for_each_sample(|t, v| fast_got.push((t, v.to_bits())));
        assert_eq!(fast_got, got);
        assert_eq!(res.err().as_ref(), it.err());
        assert_eq!(fast.err(), it.err());
        assert!(fast.next().is_none(), "the iterator stays done");
        assert_eq!(XorIter::new(data).unwrap().fold(Vec::new(), push), got);
        let mut portable = XorIter::new(data).unwrap();
        assert_eq!(portable.decode_loop(Vec::new(), push), got);
        assert_eq!(portable.err(), it.err());
        for before in [1, 2, 3, 7] {
            let mut mixed = XorIter::new(data).unwrap();
            let head = (0..before)
                .map_while(|_| mixed.next())
                .fold(Vec::new(), push);
            assert_eq!(mixed.fold(head, push), got);
        }
        (got, failed)
    }

    /// A bit-at-a-time decoder written straight from the format description, to check the
    /// fast one against: the samples before the first problem, and whether there was one.
    fn reference_decode(data: &[u8]) -> (Vec<(i64, u64)>, bool) {
        struct Bits<'a> {
            data: &'a [u8],
            bit: usize,
        }
        impl Bits<'_> {
            fn read(&mut self, n: u32) -> Option<u64> {
                let mut v = 0u64;
                for _ in 0..n {
                    let byte = *self.data.get(self.bit / 8)?;
                    v = (v << 1) | u64::from((byte >> (7 - self.bit % 8)) & 1);
                    self.bit += 1;
                }
                Some(v)
            }
            fn uvarint(&mut self) -> Option<u64> {
                // Byte aligned here.
                let (v, n) = read_uvarint(self.data.get(self.bit / 8..)?).ok()?;
                self.bit += 8 * n;
                Some(v)
            }
        }
        // The value that follows, given the previous one and the window (leading, trailing).
        fn value(r: &mut Bits, v: u64, win: &mut (u32, u32)) -> Option<u64> {
            if r.read(1)? == 0 {
                return Some(v);
            }
            if r.read(1)? == 1 {
                let leading = r.read(5)? as u32;
                let sig = match r.read(6)? as u32 {
                    0 => 64,
                    s => s,
                };
                if leading + sig > 64 {
                    return None;
                }
                *win = (leading, 64 - leading - sig);
            }
            let sig = 64 - win.0 - win.1;
            Some(v ^ (r.read(sig)? << win.1))
        }
        fn run(r: &mut Bits, out: &mut Vec<(i64, u64)>) -> Option<()> {
            let count = r.read(16)? as usize;
            let mut win = (0, 0);
            let (mut t, mut delta, mut v) = (0i64, 0u64, 0u64);
            for i in 0..count {
                match i {
                    0 => {
                        t = unzigzag(r.uvarint()?);
                        v = r.read(64)?;
                    }
                    1 => {
                        delta = r.uvarint()?;
                        t = t.wrapping_add(delta as i64);
                        v = value(r, v, &mut win)?;
                    }
                    _ => {
                        let mut ones = 0;
                        while ones < 4 && r.read(1)? == 1 {
                            ones += 1;
                        }
                        let width = [0, 14, 17, 20, 64][ones];
                        let mut dod = r.read(width)?;
                        if (1..64).contains(&width) && dod > 1 << (width - 1) {
                            dod = dod.wrapping_sub(1 << width);
                        }
                        delta = delta.wrapping_add(dod);
                        t = t.wrapping_add(delta as i64);
                        v = value(r, v, &mut win)?;
                    }
                }
                out.push((t, v));
            }
            Some(())
        }
        let mut out = Vec::new();
        let ok = run(&mut Bits { data, bit: 0 }, &mut out).is_some();
        (out, !ok)
    }

    /// Counter-like series: small increments (narrow value windows), repeats, an occasional
    /// jump, NaN or stale marker, and regular timestamps with jitter and the odd large gap.
    fn counter_like() -> impl Strategy<Value = Vec<(i64, u64)>> {
        let step = (
            prop_oneof![
                8 => (0u32..10).prop_map(f64::from),
                1 => (0u32..1_000_000).prop_map(f64::from),
                1 => Just(0.0),
            ],
            prop_oneof![
                20 => Just(None),
                1 => Just(Some(STALE_NAN)),
                1 => Just(Some(f64::NAN.to_bits())),
                1 => Just(Some(f64::INFINITY.to_bits())),
            ],
            prop_oneof![
                8 => Just(15_000i64),
                2 => 14_950i64..15_050,
                1 => -(1i64 << 20)..(1i64 << 20),
                1 => any::<i64>(),
            ],
        );
        (
            any::<i64>(),
            0.0f64..1e9,
            proptest::collection::vec(step, 0..400),
        )
            .prop_map(|(t0, v0, steps)| {
                let (mut t, mut v) = (t0, v0.floor());
                steps
                    .into_iter()
                    .map(|(inc, special, dt)| {
                        v += inc;
                        let s = (t, special.unwrap_or(v.to_bits()));
                        t = t.wrapping_add(dt);
                        s
                    })
                    .collect()
            })
    }

    fn value_bits() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            Just(STALE_NAN),
            Just(f64::NAN.to_bits()),
            Just(0x7ff8_dead_beef_0001),
            Just(0xfff0_0000_0000_0001),
            Just(f64::INFINITY.to_bits()),
            Just(f64::NEG_INFINITY.to_bits()),
            Just(0),
            Just((-0.0f64).to_bits()),
            (0u32..1000).prop_map(|i| f64::from(i).to_bits()),
            (-1e6f64..1e6).prop_map(f64::to_bits),
        ]
    }

    fn delta() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => Just(15_000i64),
            4 => 14_000i64..16_000,
            2 => -20_000i64..20_000,
            1 => -(1i64 << 21)..(1i64 << 21),
            1 => any::<i64>(),
            1 => Just(i64::MIN),
            1 => Just(i64::MAX),
            1 => Just(0i64),
        ]
    }

    fn samples() -> impl Strategy<Value = Vec<(i64, u64)>> {
        (
            any::<i64>(),
            proptest::collection::vec((delta(), value_bits()), 0..300),
        )
            .prop_map(|(t0, rest)| {
                let mut t = t0;
                rest.into_iter()
                    .map(|(d, v)| {
                        let s = (t, v);
                        t = t.wrapping_add(d);
                        s
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn round_trip(s in samples()) {
            let data = encode(&s);
            prop_assert_eq!(decode_bits(&data).unwrap(), s);
        }

        #[test]
        fn round_trip_raw_timestamps(
            s in proptest::collection::vec((any::<i64>(), value_bits()), 1..100)
        ) {
            let data = encode(&s);
            prop_assert_eq!(decode_bits(&data).unwrap(), s);
        }

        #[test]
        fn every_truncation_is_an_error(s in samples()) {
            let data = encode(&s);
            for cut in 0..data.len() {
                prop_assert!(decode_xor(&data[..cut]).is_err(), "prefix {} of {}", cut, data.len());
            }
        }

        #[test]
        fn round_trip_counter_like(s in counter_like()) {
            let data = encode(&s);
            prop_assert_eq!(decode_bits(&data).unwrap(), s);
        }

        #[test]
        fn matches_reference_decoder(s in samples(), cut in any::<prop::sample::Index>()) {
            // Valid chunks and every kind of truncation of them.
            let data = encode(&s);
            let d = &data[..cut.index(data.len() + 1)];
            prop_assert_eq!(decode_all(d), reference_decode(d));
        }

        #[test]
        fn counter_like_matches_reference_decoder(
            s in counter_like(),
            cut in any::<prop::sample::Index>(),
        ) {
            // The narrow-window loop (`State::run_narrow`) takes most of these samples, hands
            // wide windows, wider delta-of-deltas and the last bytes to `step`, and must agree with
            // the reference on every sample and on where a truncated chunk fails.
            let data = encode(&s);
            let d = &data[..cut.index(data.len() + 1)];
            prop_assert_eq!(decode_all(d), reference_decode(d));
            prop_assert_eq!(decode_all(&data), reference_decode(&data));
        }

        #[test]
        fn garbage_matches_reference_decoder(
            count in any::<u16>(),
            data in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut b = count.to_be_bytes().to_vec();
            b.extend_from_slice(&data);
            prop_assert_eq!(decode_all(&b), reference_decode(&b));
            prop_assert_eq!(decode_all(&data), reference_decode(&data));
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_xor(&data);
            let mut it = match XorIter::new(&data) { Ok(it) => it, Err(_) => return Ok(()) };
            let n = it.by_ref().count();
            prop_assert!(n <= usize::from(it.num_samples()));
            if n < usize::from(it.num_samples()) {
                prop_assert!(it.err().is_some());
            }
            prop_assert!(it.next().is_none());
        }

        #[test]
        fn garbage_after_valid_header_never_panics(
            count in any::<u16>(),
            data in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut b = count.to_be_bytes().to_vec();
            b.extend_from_slice(&data);
            let _ = decode_xor(&b);
        }
    }

    #[test]
    fn known_answer_one_sample() {
        let data = encode(&[(1000, 1.0f64.to_bits())]);
        assert_eq!(
            data,
            [0x00, 0x01, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
            "count, varint(1000) = zigzag 2000, then the raw bits of 1.0"
        );
    }

    #[test]
    fn known_answer_three_samples() {
        // Sample 1: uvarint(15000) = 98 75, value unchanged = bit 0.
        // Sample 2: dod 0 = bit 0; 2.0 ^ 1.0 = 0x7ff0.. has 1 leading and 52 trailing zeros:
        // '11' + 00001 + 001011 (11 bits) + 11111111111, padded:
        // 0011 0000 | 1001 0111 | 1111 1111 | 11 000000 = 30 97 ff c0.
        let s = [
            (1000, 1.0f64.to_bits()),
            (16000, 1.0f64.to_bits()),
            (31000, 2.0f64.to_bits()),
        ];
        let data = encode(&s);
        assert_eq!(
            data,
            [
                0x00, 0x03, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x98, 0x75, 0x30, 0x97, 0xff,
                0xc0
            ]
        );
        assert_eq!(decode_bits(&data).unwrap(), s);
    }

    #[test]
    fn dod_field_widths_match_prometheus() {
        // Bits used by the third sample for a given delta-of-delta (its value is unchanged, +1).
        let bits_for = |dod: i64| {
            let mut e = XorEncoder::new();
            e.append(0, 1.0);
            e.append(1_000_000, 1.0);
            let before = e.bit_len();
            e.append(2_000_000 + dod, 1.0);
            e.bit_len() - before - 1
        };
        assert_eq!(bits_for(0), 1);
        assert_eq!(bits_for(8192), 16);
        assert_eq!(bits_for(-8191), 16);
        assert_eq!(bits_for(-8192), 20);
        assert_eq!(bits_for(8193), 20);
        assert_eq!(bits_for(1 << 16), 20);
        assert_eq!(bits_for(-(1 << 16)), 24);
        assert_eq!(bits_for(1 << 19), 24);
        assert_eq!(bits_for((1 << 19) + 1), 68);
        assert_eq!(bits_for(-(1 << 19) + 1), 24);
        assert_eq!(bits_for(-(1 << 19)), 68);
        for dod in [
            8192,
            -8191,
            -8192,
            65536,
            -65535,
            1 << 19,
            -(1 << 19),
            i64::MAX / 4,
        ] {
            let s = [
                (0, 1u64),
                (1_000_000, 1u64),
                (2_000_000i64.wrapping_add(dod), 1u64),
            ];
            assert_eq!(decode_bits(&encode(&s)).unwrap(), s);
        }
    }

    #[test]
    fn full_chunk_round_trips() {
        let mut e = XorEncoder::new();
        let mut expected = Vec::new();
        let mut t = -5_000_000i64;
        for i in 0..u32::from(MAX_SAMPLES) {
            assert!(!e.is_full());
            t += 15_000 + i64::from(i % 7 == 0) * 3;
            let v = if i % 1000 == 999 {
                f64::from_bits(STALE_NAN)
            } else {
                f64::from(i / 3)
            };
            e.append(t, v);
            expected.push((t, v.to_bits()));
        }
        assert!(e.is_full());
        assert_eq!(e.num_samples(), 65535);
        assert_eq!(&e.bytes()[..2], &[0xff, 0xff]);
        assert_eq!(decode_bits(e.bytes()).unwrap(), expected);
    }

    #[test]
    #[should_panic(expected = "full")]
    fn appending_to_a_full_chunk_panics() {
        let mut e = XorEncoder::new();
        for i in 0..=i64::from(MAX_SAMPLES) {
            e.append(i, 0.0);
        }
    }

    #[test]
    fn empty_and_header_only() {
        assert_eq!(XorEncoder::new().bytes(), &[0, 0]);
        assert_eq!(decode_xor(&[0, 0]).unwrap(), vec![]);
        assert!(matches!(
            XorIter::new(&[0]),
            Err(DecodeError::ShortRead { needed: 2, .. })
        ));
        // A count with no samples behind it.
        let mut it = XorIter::new(&[0, 5]).unwrap();
        assert_eq!(it.next(), None);
        assert!(matches!(it.err(), Some(DecodeError::ShortRead { .. })));
        assert_eq!(it.next(), None, "the error is sticky");
        assert_eq!(it.num_samples(), 5, "the header count survives the error");
    }

    #[test]
    fn impossible_window_is_an_error() {
        // Valid two samples, then a third value with a window of 31 leading zeros and 64 bits.
        let mut data = encode(&[(0, 0), (10, 0)]);
        data[1] = 3;
        // Sample 1 used '0' (1 bit) so the last byte has 7 free bits. Append: dod '0', then
        // '11' + 11111 + 000000 (= 64): set the remaining bits explicitly.
        let last = data.len() - 1;
        // Bits after sample 1's '0': dod '0', '11', '1111' (4 of the 5 leading-zero bits).
        data[last] |= 0x3f;
        // Fifth leading bit, then sig 000000 (= 64), then the first value bit.
        data.push(0x80);
        data.extend_from_slice(&[0xff; 9]);
        let err = decode_xor(&data).unwrap_err();
        assert!(matches!(err, DecodeError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut data = encode(&[(1, 2), (3, 4)]);
        data.extend_from_slice(&[0xde, 0xad]);
        assert_eq!(decode_bits(&data).unwrap(), vec![(1, 2), (3, 4)]);
    }
}
