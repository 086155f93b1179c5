//! An answer's computed header values (hashes, timings, footprint), written
//! into one buffer and handed out as slices of it: one allocation for all
//! of them instead of one or two per header. Building them took about a
//! tenth of the node's user-space time per uncached call, mostly in malloc.

use std::fmt::{self, Write};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::{BufMut, BytesMut};

pub struct HeaderValues {
    text: BytesMut,
    /// Each header's name and where its value lies in `text`.
    spans: Vec<(HeaderName, usize, usize)>,
}

impl HeaderValues {
    pub fn new() -> Self {
        // Room for an uncached answer's values (~320 bytes) without growing.
        HeaderValues { text: BytesMut::with_capacity(512), spans: Vec::with_capacity(12) }
    }

    /// A value `write` prints (`write!` into the buffer).
    pub fn print(&mut self, name: HeaderName, write: impl FnOnce(&mut BytesMut) -> fmt::Result) {
        let start = self.text.len();
        if write(&mut self.text).is_ok() {
            self.spans.push((name, start, self.text.len()));
        } else {
            self.text.truncate(start);
        }
    }

    pub fn bytes(&mut self, name: HeaderName, value: &[u8]) {
        self.print(name, |text| {
            text.put_slice(value);
            Ok(())
        });
    }

    pub fn number(&mut self, name: HeaderName, value: u64) {
        self.print(name, |text| write!(text, "{value}"));
    }

    /// Inserts every value into `headers`; one that is not a valid header
    /// value (bytes a peer sent, say) is left out, as `HeaderValue` would.
    pub fn insert_into(self, headers: &mut HeaderMap) {
        let text: Bytes = self.text.freeze();
        for (name, start, end) in self.spans {
            if let Ok(value) = HeaderValue::from_maybe_shared(text.slice(start..end)) {
                headers.insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_out_as_written_and_invalid_ones_are_left_out() {
        let mut values = HeaderValues::new();
        values.number(HeaderName::from_static("x-n"), 42);
        values.bytes(HeaderName::from_static("x-bad"), b"line\nbreak");
        values.print(HeaderName::from_static("x-f"), |text| write!(text, "{:.1}", 2.25f64));
        values.bytes(HeaderName::from_static("x-b"), b"\"etag\"");
        let mut headers = HeaderMap::new();
        values.insert_into(&mut headers);
        assert_eq!(headers["x-n"], "42");
        assert_eq!(headers["x-f"], "2.2");
        assert_eq!(headers["x-b"], "\"etag\"");
        assert!(headers.get("x-bad").is_none());
        assert_eq!(headers.len(), 3);
    }
}
