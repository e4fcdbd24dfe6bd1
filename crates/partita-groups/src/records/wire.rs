//! Kafka's primitive field encodings, in their classic and flexible forms, as kafka-protocol
//! writes and reads them (its `types`).
//!
//! A [`Writer`] or [`Reader`] is made for one message version: `flexible` selects the compact
//! encodings (unsigned-varint lengths, `len + 1` with 0 for null) and tagged-field sections, as
//! the schemas' `flexibleVersions` say. Reading never panics: a short buffer is
//! [`RecordError::Truncated`], a malformed one [`RecordError::Invalid`].

use bytes::{BufMut, Bytes};
use kafka_protocol::protocol::buf::NotEnoughBytesError;
use kafka_protocol::protocol::types::{
    Bytes as ClassicBytes, CompactBytes, CompactString, Int16, Int32, Int64, Int8,
    String as ClassicString, UnsignedVarInt,
};
use kafka_protocol::protocol::{Decoder, Encoder};

use super::RecordError;

/// Kafka limits every string, classic or compact, to `i16::MAX` bytes.
const MAX_STRING_LEN: usize = i16::MAX as usize;

/// Builds one message's bytes.
pub(super) struct Writer {
    buf: Vec<u8>,
    flexible: bool,
}

impl Writer {
    pub(super) fn new(flexible: bool) -> Writer {
        Writer {
            buf: Vec::new(),
            flexible,
        }
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes with one of kafka-protocol's field types. Writing into a `Vec` fails only for a
    /// value the type cannot hold, which the callers keep within bounds.
    fn put<V>(&mut self, encoder: impl Encoder<V>, value: V) {
        let written = encoder.encode(&mut self.buf, value);
        debug_assert!(written.is_ok(), "field out of bounds: {written:?}");
    }

    pub(super) fn i8(&mut self, value: i8) {
        self.put(Int8, value);
    }

    pub(super) fn i16(&mut self, value: i16) {
        self.put(Int16, value);
    }

    pub(super) fn i32(&mut self, value: i32) {
        self.put(Int32, value);
    }

    pub(super) fn i64(&mut self, value: i64) {
        self.put(Int64, value);
    }

    pub(super) fn uuid(&mut self, value: &[u8; 16]) {
        self.buf.put_slice(value);
    }

    /// Unsigned varint: 7 bits a byte, least significant group first.
    pub(super) fn uvarint(&mut self, value: u32) {
        self.put(UnsignedVarInt, value);
    }

    /// STRING (int16 length) or COMPACT_STRING (uvarint length + 1).
    ///
    /// Strings longer than Kafka's limit of `i16::MAX` bytes cannot come from a Kafka request;
    /// should one reach here it is cut at that limit so that the record stays readable.
    pub(super) fn string(&mut self, value: &str) {
        self.nullable_string(Some(value));
    }

    /// NULLABLE_STRING: like [`Writer::string`], with length -1 (classic) or 0 (compact) for null.
    pub(super) fn nullable_string(&mut self, value: Option<&str>) {
        let value = value.map(clamp);
        if self.flexible {
            self.put(CompactString, value);
        } else {
            self.put(ClassicString, value);
        }
    }

    /// BYTES (int32 length) or COMPACT_BYTES (uvarint length + 1).
    pub(super) fn bytes(&mut self, value: &[u8]) {
        if self.flexible {
            self.put(CompactBytes, value);
        } else {
            self.put(ClassicBytes, value);
        }
    }

    /// ARRAY (int32 count) or COMPACT_ARRAY (uvarint count + 1); the elements follow.
    pub(super) fn array_len(&mut self, count: usize) {
        if self.flexible {
            self.uvarint(u32::try_from(count).map_or(u32::MAX, |n| n.saturating_add(1)));
        } else {
            self.i32(i32::try_from(count).unwrap_or(i32::MAX));
        }
    }

    /// NULLABLE ARRAY: null is count -1 (classic) or 0 (compact).
    pub(super) fn null_array(&mut self) {
        if self.flexible {
            self.uvarint(0);
        } else {
            self.i32(-1);
        }
    }

    /// An array of strings.
    pub(super) fn strings(&mut self, values: &[String]) {
        self.array_len(values.len());
        for value in values {
            self.string(value);
        }
    }

    /// An array of int32.
    pub(super) fn i32s(&mut self, values: &[i32]) {
        self.array_len(values.len());
        for value in values {
            self.i32(*value);
        }
    }

    /// The tagged-field section closing a flexible struct: the fields as `(tag, bytes)` in
    /// ascending tag order. Writes nothing in a classic version.
    pub(super) fn tagged_fields(&mut self, fields: &[(u32, Vec<u8>)]) {
        if !self.flexible {
            return;
        }
        self.uvarint(fields.len() as u32);
        for (tag, bytes) in fields {
            self.uvarint(*tag);
            self.uvarint(bytes.len() as u32);
            self.buf.put_slice(bytes);
        }
    }
}

fn clamp(value: &str) -> &str {
    if value.len() <= MAX_STRING_LEN {
        return value;
    }
    let mut end = MAX_STRING_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// The error of a field that would not decode.
fn decode_error(error: anyhow::Error) -> RecordError {
    if error.downcast_ref::<NotEnoughBytesError>().is_some() {
        RecordError::Truncated
    } else {
        RecordError::Invalid(error.to_string())
    }
}

/// Reads one message's fields.
pub(super) struct Reader {
    buf: Bytes,
    flexible: bool,
}

impl Reader {
    pub(super) fn new(buf: &[u8], flexible: bool) -> Reader {
        Reader {
            buf: Bytes::copy_from_slice(buf),
            flexible,
        }
    }

    /// Reads with one of kafka-protocol's field types.
    fn get<V>(&mut self, decoder: impl Decoder<V>) -> Result<V, RecordError> {
        decoder.decode(&mut self.buf).map_err(decode_error)
    }

    fn take(&mut self, len: usize) -> Result<Bytes, RecordError> {
        use kafka_protocol::protocol::buf::ByteBuf;
        self.buf
            .try_get_bytes(len)
            .map_err(|_| RecordError::Truncated)
    }

    pub(super) fn i8(&mut self) -> Result<i8, RecordError> {
        self.get(Int8)
    }

    pub(super) fn i16(&mut self) -> Result<i16, RecordError> {
        self.get(Int16)
    }

    pub(super) fn i32(&mut self) -> Result<i32, RecordError> {
        self.get(Int32)
    }

    pub(super) fn i64(&mut self) -> Result<i64, RecordError> {
        self.get(Int64)
    }

    pub(super) fn uuid(&mut self) -> Result<[u8; 16], RecordError> {
        let bytes = self.take(16)?;
        let mut out = [0; 16];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    /// Unsigned varint, read as kafka-protocol reads one: at most five bytes.
    pub(super) fn uvarint(&mut self) -> Result<u32, RecordError> {
        self.get(UnsignedVarInt)
    }

    pub(super) fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?
            .ok_or_else(|| RecordError::Invalid("null in a non-nullable string".into()))
    }

    pub(super) fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        if self.flexible {
            self.get(CompactString)
        } else {
            self.get(ClassicString)
        }
    }

    pub(super) fn bytes(&mut self) -> Result<Vec<u8>, RecordError> {
        let bytes: Option<Vec<u8>> = if self.flexible {
            self.get(CompactBytes)?
        } else {
            self.get(ClassicBytes)?
        };
        bytes.ok_or_else(|| RecordError::Invalid("null in a non-nullable bytes field".into()))
    }

    /// An array, each element read by `element`.
    pub(super) fn array_of<T>(
        &mut self,
        element: impl FnMut(&mut Reader) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
        self.nullable_array_of(element)?
            .ok_or_else(|| RecordError::Invalid("null in a non-nullable array".into()))
    }

    /// A NULLABLE ARRAY: `None` for null.
    pub(super) fn nullable_array_of<T>(
        &mut self,
        mut element: impl FnMut(&mut Reader) -> Result<T, RecordError>,
    ) -> Result<Option<Vec<T>>, RecordError> {
        let count: i64 = if self.flexible {
            i64::from(self.uvarint()?) - 1
        } else {
            i64::from(self.i32()?)
        };
        if count < 0 {
            return Ok(None);
        }
        // Every element here takes at least one byte: refuse a count the buffer cannot hold
        // before allocating for it.
        let count = usize::try_from(count).map_err(|_| RecordError::Truncated)?;
        if count > self.buf.len() {
            return Err(RecordError::Truncated);
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(element(self)?);
        }
        Ok(Some(out))
    }

    pub(super) fn strings(&mut self) -> Result<Vec<String>, RecordError> {
        self.array_of(Reader::string)
    }

    pub(super) fn i32s(&mut self) -> Result<Vec<i32>, RecordError> {
        self.array_of(Reader::i32)
    }

    /// The tagged-field section of a flexible struct: `field` is called with each tag and a
    /// reader over exactly that field's bytes; it ignores tags it does not know, as Kafka does.
    /// Reads nothing in a classic version.
    pub(super) fn tagged_fields(
        &mut self,
        mut field: impl FnMut(u32, &mut Reader) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            let body = self.take(size)?;
            let mut body = Reader {
                buf: body,
                flexible: true,
            };
            field(tag, &mut body)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_matches_kafka_examples() {
        for (value, bytes) in [
            (0u32, vec![0x00]),
            (1, vec![0x01]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (u32::MAX, vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut writer = Writer::new(true);
            writer.uvarint(value);
            assert_eq!(writer.into_bytes(), bytes);
            assert_eq!(Reader::new(&bytes, true).uvarint().unwrap(), value);
        }
        // As kafka-protocol reads every request: at most five bytes, whatever follows is the
        // next field.
        let mut too_long = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], true);
        too_long.uvarint().unwrap();
        assert_eq!(too_long.i8().unwrap(), 1);
        assert!(
            Reader::new(&[0x80, 0x80], true).uvarint().is_err(),
            "truncated"
        );
    }

    #[test]
    fn strings_classic_and_compact() {
        let mut classic = Writer::new(false);
        classic.string("ab");
        classic.nullable_string(None);
        assert_eq!(classic.into_bytes(), [0, 2, b'a', b'b', 0xff, 0xff]);

        let mut compact = Writer::new(true);
        compact.string("ab");
        compact.nullable_string(None);
        assert_eq!(compact.into_bytes(), [3, b'a', b'b', 0]);

        let mut reader = Reader::new(&[3, b'a', b'b', 0], true);
        assert_eq!(reader.string().unwrap(), "ab");
        assert_eq!(reader.nullable_string().unwrap(), None);
    }

    #[test]
    fn overlong_string_is_cut_at_a_char_boundary() {
        let long = "é".repeat(20_000); // 40,000 bytes
        let mut writer = Writer::new(false);
        writer.string(&long);
        let bytes = writer.into_bytes();
        let decoded = Reader::new(&bytes, false).string().unwrap();
        assert_eq!(decoded.len(), 32_766);
    }

    #[test]
    fn tagged_fields_skip_unknown_tags() {
        let mut writer = Writer::new(true);
        writer.tagged_fields(&[(0, vec![1, 2]), (5, vec![9])]);
        let bytes = writer.into_bytes();
        assert_eq!(bytes, [2, 0, 2, 1, 2, 5, 1, 9]);
        let mut seen = Vec::new();
        Reader::new(&bytes, true)
            .tagged_fields(|tag, body| {
                seen.push((tag, body.i8()?));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, [(0, 1), (5, 9)]);
    }

    #[test]
    fn huge_array_count_is_refused_before_allocating() {
        let bytes = [0x7f, 0xff, 0xff, 0xff, 0, 0];
        let result = Reader::new(&bytes, false).i32s();
        assert!(matches!(result, Err(RecordError::Truncated)));
    }
}
