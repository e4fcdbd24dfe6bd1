//! Kafka's primitive field encodings, in their classic and flexible forms.
//!
//! A [`Writer`] or [`Reader`] is made for one message version: `flexible` selects the compact
//! encodings (unsigned-varint lengths, `len + 1` with 0 for null) and tagged-field sections, as
//! the schemas' `flexibleVersions` say. Integers are big-endian. Reading never panics: a short
//! buffer is [`RecordError::Truncated`], a malformed one [`RecordError::Invalid`].

use bytes::BufMut;

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

    pub(super) fn i8(&mut self, value: i8) {
        self.buf.put_i8(value);
    }

    pub(super) fn i16(&mut self, value: i16) {
        self.buf.put_i16(value);
    }

    pub(super) fn i32(&mut self, value: i32) {
        self.buf.put_i32(value);
    }

    pub(super) fn i64(&mut self, value: i64) {
        self.buf.put_i64(value);
    }

    pub(super) fn uuid(&mut self, value: &[u8; 16]) {
        self.buf.put_slice(value);
    }

    /// Unsigned varint: 7 bits a byte, least significant group first.
    pub(super) fn uvarint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.buf.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.buf.put_u8(value as u8);
    }

    /// STRING (int16 length) or COMPACT_STRING (uvarint length + 1).
    ///
    /// Strings longer than Kafka's limit of `i16::MAX` bytes cannot come from a Kafka request;
    /// should one reach here it is cut at that limit so that the record stays readable.
    pub(super) fn string(&mut self, value: &str) {
        let value = clamp(value);
        self.length(value.len());
        self.buf.put_slice(value.as_bytes());
    }

    /// NULLABLE_STRING: like [`Writer::string`], with length -1 (classic) or 0 (compact) for null.
    pub(super) fn nullable_string(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.string(value),
            None => self.null(),
        }
    }

    /// BYTES (int32 length) or COMPACT_BYTES (uvarint length + 1).
    pub(super) fn bytes(&mut self, value: &[u8]) {
        if self.flexible {
            self.uvarint(compact_len(value.len()));
        } else {
            self.buf
                .put_i32(i32::try_from(value.len()).unwrap_or(i32::MAX));
        }
        self.buf.put_slice(value);
    }

    /// ARRAY (int32 count) or COMPACT_ARRAY (uvarint count + 1); the elements follow.
    pub(super) fn array_len(&mut self, count: usize) {
        if self.flexible {
            self.uvarint(compact_len(count));
        } else {
            self.buf.put_i32(i32::try_from(count).unwrap_or(i32::MAX));
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

    fn length(&mut self, len: usize) {
        if self.flexible {
            self.uvarint(compact_len(len));
        } else {
            // `clamp` keeps `len` within i16.
            self.buf.put_i16(len as i16);
        }
    }

    fn null(&mut self) {
        if self.flexible {
            self.uvarint(0);
        } else {
            self.buf.put_i16(-1);
        }
    }
}

fn compact_len(len: usize) -> u32 {
    u32::try_from(len).map_or(u32::MAX, |len| len.saturating_add(1))
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

/// Reads one message's fields from a byte slice.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    flexible: bool,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], flexible: bool) -> Reader<'a> {
        Reader { buf, flexible }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], RecordError> {
        if len > self.buf.len() {
            return Err(RecordError::Truncated);
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    pub(super) fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(super) fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(super) fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub(super) fn uuid(&mut self) -> Result<[u8; 16], RecordError> {
        self.array()
    }

    /// Unsigned varint of at most five bytes, as Kafka accepts.
    pub(super) fn uvarint(&mut self) -> Result<u32, RecordError> {
        let mut value: u32 = 0;
        for index in 0..5 {
            let byte = self.take(1)?[0];
            if index == 4 && byte > 0x0f {
                return Err(RecordError::Invalid(
                    "unsigned varint overflows 32 bits".into(),
                ));
            }
            value |= u32::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::Invalid(
            "unsigned varint overflows 32 bits".into(),
        ))
    }

    /// A length prefix; `None` means null (classic -1, compact 0).
    fn length(&mut self, classic_wide: bool) -> Result<Option<usize>, RecordError> {
        let len: i64 = if self.flexible {
            i64::from(self.uvarint()?) - 1
        } else if classic_wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        match len {
            -1 => Ok(None),
            len if len < 0 => Err(RecordError::Invalid(format!("negative length {len}"))),
            len => usize::try_from(len)
                .map(Some)
                .map_err(|_| RecordError::Truncated),
        }
    }

    pub(super) fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?
            .ok_or_else(|| RecordError::Invalid("null in a non-nullable string".into()))
    }

    pub(super) fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let Some(len) = self.length(false)? else {
            return Ok(None);
        };
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| RecordError::Invalid("string is not UTF-8".into()))
    }

    pub(super) fn bytes(&mut self) -> Result<Vec<u8>, RecordError> {
        let len = self
            .length(true)?
            .ok_or_else(|| RecordError::Invalid("null in a non-nullable bytes field".into()))?;
        Ok(self.take(len)?.to_vec())
    }

    /// An array, each element read by `element`.
    pub(super) fn array_of<T>(
        &mut self,
        mut element: impl FnMut(&mut Reader<'a>) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
        let count = self
            .length(true)?
            .ok_or_else(|| RecordError::Invalid("null in a non-nullable array".into()))?;
        // Every element here takes at least one byte: refuse a count the buffer cannot hold
        // before allocating for it.
        if count > self.buf.len() {
            return Err(RecordError::Truncated);
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(element(self)?);
        }
        Ok(out)
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
        mut field: impl FnMut(u32, &mut Reader<'a>) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            let mut body = Reader::new(self.take(size)?, true);
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
        let too_long = [0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(Reader::new(&too_long, true).uvarint().is_err());
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
