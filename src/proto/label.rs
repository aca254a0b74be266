//! `thanos.Label` is the model's [`Label`] itself (`extern_path` in `build.rs`): a reply's
//! labels go on the wire as the store resolved them, without a copy into proto strings.

use compact_str::CompactString;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use crate::model::Label;

const NAME: u32 = 1;
const VALUE: u32 = 2;

impl prost::Message for Label {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encode_str(NAME, &self.name, buf);
        encode_str(VALUE, &self.value, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            NAME => merge_str(&mut self.name, wire_type, buf, ctx),
            VALUE => merge_str(&mut self.value, wire_type, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        str_len(NAME, &self.name) + str_len(VALUE, &self.value)
    }

    fn clear(&mut self) {
        self.name.clear();
        self.value.clear();
    }
}

/// A proto3 string field: left out when empty.
fn encode_str(tag: u32, s: &str, buf: &mut impl BufMut) {
    if !s.is_empty() {
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(s.len() as u64, buf);
        buf.put_slice(s.as_bytes());
    }
}

fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        encoding::key_len(tag) + encoding::encoded_len_varint(s.len() as u64) + s.len()
    }
}

/// Decodes through prost's own string field, which checks the UTF-8.
fn merge_str(
    field: &mut CompactString,
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    let mut s = String::new();
    encoding::string::merge(wire_type, &mut s, buf, ctx)?;
    *field = CompactString::from(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// The generated type of the same message, as another implementation to compare with.
    #[derive(Clone, PartialEq, prost::Message)]
    struct GeneratedLabel {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        value: String,
    }

    proptest::proptest! {
        #[test]
        fn same_bytes_as_generated_code(name in "\\PC{0,40}", value in "\\PC{0,40}") {
            let ours = Label { name: name.as_str().into(), value: value.as_str().into() };
            let generated = GeneratedLabel { name, value };
            let bytes = ours.encode_to_vec();
            proptest::prop_assert_eq!(&bytes, &generated.encode_to_vec());
            proptest::prop_assert_eq!(ours.encoded_len(), bytes.len());
            let back = Label::decode(&bytes[..]).unwrap();
            proptest::prop_assert_eq!(back, ours);
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        // Field 1, length 2, bytes that are not UTF-8.
        assert!(Label::decode(&[0x0a, 0x02, 0xff, 0xfe][..]).is_err());
    }
}
