//! The postings offset table: where the postings list of every (name, value) pair starts.
//!
//! ```text
//! ┌─────────────────────┬──────────────────────┐
//! │ len <4b>            │ #entries <4b>        │
//! ├─────────────────────┴──────────────────────┤
//! │ n = 2 <uvarint>                            │
//! │ len(name) <uvarint> │ name                 │
//! │ len(value) <uvarint>│ value                │
//! │ offset <uvarint64>  (absolute, in the file)│
//! │ ...                                        │
//! ├────────────────────────────────────────────┤
//! │ CRC32C over #entries and entries <4b>      │
//! └────────────────────────────────────────────┘
//! ```
//!
//! In v2 the entries are sorted by name then value and start with `("", "")`, and the lists
//! are laid out in the same order, so a list ends where the next entry's list starts.
//! [`SampledTable`] keeps every 32nd value of each name (plus the last) in memory and scans
//! the section bytes from the nearest sample, as Prometheus does. v1 tables carry no order
//! guarantee and are held whole in [`FullTable`].

use std::cmp::Ordering;
use std::ops::ControlFlow;

use bytes::Bytes;

use super::decode_frame;
use crate::tsdb::encoding::{Decbuf, DecodeError};

/// One value per this many is sampled per label name.
pub const POSTINGS_SAMPLE_FACTOR: usize = 32;

/// An entry as borrowed from the section bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostingsTableEntry<'a> {
    pub name: &'a str,
    pub value: &'a str,
    /// Absolute file offset of the postings list.
    pub offset: u64,
    /// Position of this entry within the table content (after the length field).
    pub position: usize,
}

/// An entry's name and value as undecoded bytes: all a scan of the whole table needs to check
/// the order (byte order is UTF-8's order). Entries that are kept or returned go through
/// [`decode_entry`], which checks their UTF-8.
struct RawEntry<'a> {
    name: &'a [u8],
    value: &'a [u8],
    offset: u64,
}

fn decode_raw_entry<'a>(d: &mut Decbuf<'a>) -> Result<RawEntry<'a>, DecodeError> {
    let n = d.uvarint()?;
    if n != 2 {
        return Err(DecodeError::Invalid(format!(
            "postings offset table entry has {n} keys, expected 2"
        )));
    }
    let name = d.uvarint_bytes()?;
    let value = d.uvarint_bytes()?;
    let offset = d.uvarint()?;
    Ok(RawEntry {
        name,
        value,
        offset,
    })
}

/// Decodes one entry at the cursor.
fn decode_entry<'a>(
    d: &mut Decbuf<'a>,
    position: usize,
) -> Result<PostingsTableEntry<'a>, DecodeError> {
    let raw = decode_raw_entry(d)?;
    let utf8 = |b| std::str::from_utf8(b).map_err(|_| DecodeError::Utf8);
    Ok(PostingsTableEntry {
        name: utf8(raw.name)?,
        value: utf8(raw.value)?,
        offset: raw.offset,
        position,
    })
}

/// Calls `f` for every entry of a whole framed table (`len | content | CRC`), after
/// checking the CRC. `f` may stop early with `ControlFlow::Break`. Errors carry the position
/// of the offending entry relative to the start of `section`.
pub fn visit_postings_offset_table<'a, F>(
    section: &'a [u8],
    f: F,
) -> Result<(), (usize, DecodeError)>
where
    F: FnMut(PostingsTableEntry<'a>) -> Result<ControlFlow<()>, DecodeError>,
{
    let content = decode_frame(section).map_err(|e| (0, e))?;
    visit_content(content, f).map_err(|(p, e)| (p + 4, e))
}

/// Like [`visit_postings_offset_table`] over the already verified content; positions are
/// relative to the content.
pub fn visit_content<'a, F>(content: &'a [u8], mut f: F) -> Result<(), (usize, DecodeError)>
where
    F: FnMut(PostingsTableEntry<'a>) -> Result<ControlFlow<()>, DecodeError>,
{
    visit_entries(content, decode_entry, |e, _| f(e))
}

/// Calls `f` with every entry of `content` as `decode` gives it, and the entry's position.
fn visit_entries<'a, E>(
    content: &'a [u8],
    decode: impl Fn(&mut Decbuf<'a>, usize) -> Result<E, DecodeError>,
    mut f: impl FnMut(E, usize) -> Result<ControlFlow<()>, DecodeError>,
) -> Result<(), (usize, DecodeError)> {
    let mut d = Decbuf::new(content);
    let count = d.be32().map_err(|e| (0, e))?;
    for _ in 0..count {
        let pos = content.len() - d.len();
        let entry = decode(&mut d, pos).map_err(|e| (pos, e))?;
        if f(entry, pos).map_err(|e| (pos, e))?.is_break() {
            return Ok(());
        }
    }
    if !d.is_empty() {
        let pos = content.len() - d.len();
        return Err((
            pos,
            DecodeError::Invalid(format!("{} trailing bytes after {count} entries", d.len())),
        ));
    }
    Ok(())
}

/// A found list: where it starts and where the next list (if any) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLocation {
    pub offset: u64,
    /// Offset of the following list in the table; `None` for the last entry.
    pub next_offset: Option<u64>,
}

#[derive(Debug, Clone)]
struct NameSamples {
    name: String,
    /// `(value, position of its entry in the content)`; the first and last are included.
    samples: Vec<(String, u32)>,
}

/// The v2 in-memory form: sampled values over the raw table content.
#[derive(Debug, Clone)]
pub struct SampledTable {
    content: Bytes,
    names: Vec<NameSamples>,
}

impl SampledTable {
    /// Builds the samples from verified content, rejecting an unsorted table (lookups
    /// binary-search it) or one not starting with the all-postings key.
    pub fn new(content: Bytes) -> Result<Self, (usize, DecodeError)> {
        let mut positions: Vec<u32> = Vec::new();
        let mut prev: Option<(&[u8], &[u8])> = None;
        let mut in_name = 0usize;
        // The most recent unsampled entry of the current name, to add as its last value.
        let mut pending: Option<u32> = None;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        visit_entries(
            &content,
            |d, _| decode_raw_entry(d),
            |e, position| {
                let new_name = match prev {
                    None if (e.name, e.value) != (b"", b"") => {
                        return Err(DecodeError::Invalid(format!(
                            "first postings offset table entry is ({:?}, {:?}), not (\"\", \"\")",
                            text(e.name),
                            text(e.value)
                        )));
                    }
                    None => true,
                    // The name first: most entries share their name with the one before.
                    Some((name, value)) => match name.cmp(e.name) {
                        Ordering::Less => true,
                        Ordering::Equal if value < e.value => false,
                        _ => {
                            return Err(DecodeError::Invalid(format!(
                                "postings offset table not sorted: ({:?}, {:?}) after ({:?}, {:?})",
                                text(e.name),
                                text(e.value),
                                text(name),
                                text(value)
                            )));
                        }
                    },
                };
                if new_name {
                    positions.extend(pending.take());
                    in_name = 0;
                }
                prev = Some((e.name, e.value));
                let pos = u32::try_from(position)
                    .map_err(|_| DecodeError::Invalid("postings offset table over 4 GiB".into()))?;
                if in_name % POSTINGS_SAMPLE_FACTOR == 0 {
                    positions.push(pos);
                    pending = None;
                } else {
                    pending = Some(pos);
                }
                in_name += 1;
                Ok(ControlFlow::Continue(()))
            },
        )?;
        positions.extend(pending);
        Self::with_samples(content, &positions)
    }

    /// Like [`Self::new`] from the positions a previous [`Self::sample_positions`] returned
    /// for the same content (kept in an index header), decoding only the sampled entries.
    /// Checked: every position decodes to an entry, the first is the all-postings key and
    /// the keys increase; that they are the entries `new` would sample is trusted, their
    /// container being checksummed.
    pub fn with_samples(content: Bytes, positions: &[u32]) -> Result<Self, (usize, DecodeError)> {
        let mut names: Vec<NameSamples> = Vec::new();
        let mut prev: Option<(&str, &str)> = None;
        for &pos in positions {
            let at = pos as usize;
            let mut d = Decbuf::new(content.get(at..).unwrap_or_default());
            let e = decode_entry(&mut d, at).map_err(|e| (at, e))?;
            let ordered = match prev {
                None => at == 4 && (e.name, e.value) == ("", ""),
                Some(p) => p < (e.name, e.value),
            };
            if !ordered {
                return Err((
                    at,
                    DecodeError::Invalid(format!(
                        "postings table sample ({:?}, {:?}) out of order",
                        e.name, e.value
                    )),
                ));
            }
            if prev.is_none_or(|p| p.0 != e.name) {
                names.push(NameSamples {
                    name: e.name.to_string(),
                    samples: Vec::new(),
                });
            }
            prev = Some((e.name, e.value));
            if let Some(ns) = names.last_mut() {
                ns.samples.push((e.value.to_string(), pos));
            }
        }
        // Exact sizes: this is what a loaded header keeps (`plan::header` counts on it).
        for ns in &mut names {
            ns.samples.shrink_to_fit();
        }
        Ok(SampledTable { content, names })
    }

    /// The content positions of the sampled entries, in table order, for
    /// [`Self::with_samples`].
    pub fn sample_positions(&self) -> Vec<u32> {
        self.names
            .iter()
            .flat_map(|n| n.samples.iter().map(|s| s.1))
            .collect()
    }

    /// The verified table content (`#entries` and entries).
    pub fn content(&self) -> &Bytes {
        &self.content
    }

    /// Every label name in order, including the all-postings name "".
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| n.name.as_str())
    }

    fn entries_from(&self, position: u32) -> Decbuf<'_> {
        Decbuf::new(self.content.get(position as usize..).unwrap_or_default())
    }

    /// Finds the list of `(name, value)`; errors carry the content position being decoded.
    pub fn lookup(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Option<ListLocation>, (usize, DecodeError)> {
        let Ok(i) = self.names.binary_search_by(|n| n.name.as_str().cmp(name)) else {
            return Ok(None);
        };
        let Some(samples) = self.names.get(i).map(|n| &n.samples) else {
            return Ok(None);
        };
        let k = samples.partition_point(|(v, _)| v.as_str() <= value);
        let Some(&(_, start)) = k.checked_sub(1).and_then(|k| samples.get(k)) else {
            return Ok(None);
        };
        let mut d = self.entries_from(start);
        let mut found: Option<u64> = None;
        loop {
            if d.is_empty() {
                break;
            }
            let pos = self.content.len() - d.len();
            let e = decode_entry(&mut d, pos).map_err(|e| (pos, e))?;
            if let Some(offset) = found {
                return Ok(Some(ListLocation {
                    offset,
                    next_offset: Some(e.offset),
                }));
            }
            if e.name != name {
                return Ok(None);
            }
            match e.value.cmp(value) {
                Ordering::Less => continue,
                Ordering::Greater => return Ok(None),
                Ordering::Equal => found = Some(e.offset),
            }
        }
        Ok(found.map(|offset| ListLocation {
            offset,
            next_offset: None,
        }))
    }

    /// All values of `name`, in order.
    pub fn values(&self, name: &str) -> Result<Vec<String>, (usize, DecodeError)> {
        Ok(self
            .locations(name)?
            .into_iter()
            .map(|(value, _)| value)
            .collect())
    }

    /// All values of `name` in order, each with where its list lies: one scan of the name's
    /// entries instead of a lookup per value.
    pub fn locations(
        &self,
        name: &str,
    ) -> Result<Vec<(String, ListLocation)>, (usize, DecodeError)> {
        let Ok(i) = self.names.binary_search_by(|n| n.name.as_str().cmp(name)) else {
            return Ok(Vec::new());
        };
        let Some(&(_, start)) = self.names.get(i).and_then(|n| n.samples.first()) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<(String, ListLocation)> = Vec::new();
        let mut d = self.entries_from(start);
        while !d.is_empty() {
            let pos = self.content.len() - d.len();
            let e = decode_entry(&mut d, pos).map_err(|e| (pos, e))?;
            if let Some((_, last)) = out.last_mut() {
                last.next_offset = Some(e.offset);
            }
            if e.name != name {
                break;
            }
            out.push((
                e.value.to_string(),
                ListLocation {
                    offset: e.offset,
                    next_offset: None,
                },
            ));
        }
        Ok(out)
    }
}

/// The v1 in-memory form: every entry, sorted here because the file does not promise it.
#[derive(Debug, Clone)]
pub struct FullTable {
    content: Bytes,
    /// `(name, value, list offset)` sorted by name and value.
    entries: Vec<(String, String, u64)>,
    /// Every list offset, sorted, to find where a list ends.
    offsets: Vec<u64>,
}

impl FullTable {
    pub fn new(content: Bytes) -> Result<Self, (usize, DecodeError)> {
        let mut entries = Vec::new();
        visit_content(&content, |e| {
            entries.push((e.name.to_string(), e.value.to_string(), e.offset));
            Ok(ControlFlow::Continue(()))
        })?;
        entries.sort();
        let mut offsets: Vec<u64> = entries.iter().map(|e| e.2).collect();
        offsets.sort_unstable();
        offsets.dedup();
        Ok(FullTable {
            content,
            entries,
            offsets,
        })
    }

    pub fn content(&self) -> &Bytes {
        &self.content
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        let mut last: Option<&str> = None;
        self.entries.iter().filter_map(move |(n, _, _)| {
            if last == Some(n.as_str()) {
                None
            } else {
                last = Some(n.as_str());
                Some(n.as_str())
            }
        })
    }

    pub fn lookup(&self, name: &str, value: &str) -> Option<ListLocation> {
        let i = self
            .entries
            .binary_search_by(|(n, v, _)| (n.as_str(), v.as_str()).cmp(&(name, value)))
            .ok()?;
        let offset = self.entries.get(i)?.2;
        let next = self.offsets.partition_point(|&o| o <= offset);
        Some(ListLocation {
            offset,
            next_offset: self.offsets.get(next).copied(),
        })
    }

    /// All values of `name` in order, each with where its list lies.
    pub fn locations(&self, name: &str) -> Vec<(String, ListLocation)> {
        self.values(name)
            .into_iter()
            .filter_map(|v| self.lookup(name, &v).map(|l| (v, l)))
            .collect()
    }

    pub fn values(&self, name: &str) -> Vec<String> {
        let start = self.entries.partition_point(|(n, _, _)| n.as_str() < name);
        self.entries
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::encoding::Encbuf;

    fn content(entries: &[(&str, &str, u64)]) -> Bytes {
        let mut e = Encbuf::new();
        e.put_be32(entries.len() as u32);
        for (n, v, o) in entries {
            e.put_uvarint(2);
            e.put_uvarint_bytes(n.as_bytes());
            e.put_uvarint_bytes(v.as_bytes());
            e.put_uvarint(*o);
        }
        Bytes::from(e.buf)
    }

    #[test]
    fn sampled_lookup_matches_full_scan() {
        let vals: Vec<String> = (0..200).map(|i| format!("v{i:04}")).collect();
        let mut entries = vec![("", "", 100u64)];
        let mut off = 200;
        for v in &vals {
            entries.push(("a", v.as_str(), off));
            off += 12;
        }
        entries.push(("b", "x", off));
        let t = SampledTable::new(content(&entries)).unwrap();
        // 200 values: samples at 0, 32, ..., 192 plus the last.
        assert_eq!(t.names[1].samples.len(), 8);
        for (i, (n, v, o)) in entries.iter().enumerate() {
            let loc = t.lookup(n, v).unwrap().unwrap();
            assert_eq!(loc.offset, *o);
            assert_eq!(loc.next_offset, entries.get(i + 1).map(|e| e.2));
        }
        assert_eq!(t.lookup("a", "v").unwrap(), None);
        assert_eq!(t.lookup("a", "zzz").unwrap(), None);
        assert_eq!(t.lookup("a", "v0100x").unwrap(), None);
        assert_eq!(t.lookup("c", "x").unwrap(), None);
        assert_eq!(t.values("a").unwrap(), vals);
        assert_eq!(t.values("b").unwrap(), vec!["x"]);
        assert_eq!(t.names().collect::<Vec<_>>(), vec!["", "a", "b"]);

        let reopened = SampledTable::with_samples(t.content.clone(), &t.sample_positions());
        let reopened = reopened.unwrap();
        assert_eq!(reopened.names.len(), t.names.len());
        for (a, b) in reopened.names.iter().zip(&t.names) {
            assert_eq!((&a.name, &a.samples), (&b.name, &b.samples));
        }
    }

    #[test]
    fn samples_that_do_not_fit_the_content_are_refused() {
        let entries = [
            ("", "", 8u64),
            ("a", "1", 20),
            ("a", "2", 40),
            ("b", "1", 60),
        ];
        let t = SampledTable::new(content(&entries)).unwrap();
        let good = t.sample_positions();
        let c = t.content.clone();
        let reversed: Vec<u32> = good.iter().rev().copied().collect();
        for bad in [&good[1..], &reversed[..], &[4, 5][..], &[4, 9999][..]] {
            assert!(
                SampledTable::with_samples(c.clone(), bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unsorted_v2_table_is_rejected_but_v1_accepted() {
        let c = content(&[("", "", 8), ("b", "1", 20), ("a", "1", 40)]);
        assert!(SampledTable::new(c.clone()).is_err());
        let t = FullTable::new(c).unwrap();
        assert_eq!(t.lookup("a", "1").unwrap().next_offset, None);
        assert_eq!(t.lookup("b", "1").unwrap().next_offset, Some(40));
        assert_eq!(t.names().collect::<Vec<_>>(), vec!["", "a", "b"]);
        assert!(SampledTable::new(content(&[("a", "1", 8)])).is_err());
    }
}
