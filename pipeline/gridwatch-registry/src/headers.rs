//! Schema ids in Kafka record headers, Apicurio's alternative to the magic
//! byte: its serdes, with `apicurio.registry.headers.enabled`, put the id in
//! a header (an 8-byte big-endian long) and leave the payload a bare datum.

use crate::client::SchemaId;

/// Header carrying the value's contentId.
pub const VALUE_CONTENT_ID: &str = "apicurio.value.contentId";
/// Header carrying the value's globalId.
pub const VALUE_GLOBAL_ID: &str = "apicurio.value.globalId";
/// Header carrying the key's contentId.
pub const KEY_CONTENT_ID: &str = "apicurio.key.contentId";
/// Header carrying the key's globalId.
pub const KEY_GLOBAL_ID: &str = "apicurio.key.globalId";

/// Whether the id describes the record's key or its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The record key.
    Key,
    /// The record value.
    Value,
}

/// The schema id of the key or value among a record's headers; a contentId
/// is preferred over a globalId. Headers with a value that is not 8 bytes
/// are ignored, as the serdes never write them.
pub fn schema_id<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    part: Part,
) -> Option<SchemaId> {
    let (content, global) = match part {
        Part::Key => (KEY_CONTENT_ID, KEY_GLOBAL_ID),
        Part::Value => (VALUE_CONTENT_ID, VALUE_GLOBAL_ID),
    };
    let mut found = None;
    for (name, value) in headers {
        let Ok(bytes) = <[u8; 8]>::try_from(value) else {
            continue;
        };
        let id = u64::from_be_bytes(bytes);
        if name == content {
            return Some(SchemaId::ContentId(id));
        }
        if name == global {
            found = Some(SchemaId::GlobalId(id));
        }
    }
    found
}

/// The header Apicurio's serdes would write for `id`, as (name, value).
pub fn header(id: SchemaId, part: Part) -> (&'static str, [u8; 8]) {
    match (id, part) {
        (SchemaId::ContentId(n), Part::Value) => (VALUE_CONTENT_ID, n.to_be_bytes()),
        (SchemaId::GlobalId(n), Part::Value) => (VALUE_GLOBAL_ID, n.to_be_bytes()),
        (SchemaId::ContentId(n), Part::Key) => (KEY_CONTENT_ID, n.to_be_bytes()),
        (SchemaId::GlobalId(n), Part::Key) => (KEY_GLOBAL_ID, n.to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_headers() {
        let (name, value) = header(SchemaId::ContentId(0x0102), Part::Value);
        assert_eq!(name, "apicurio.value.contentId");
        assert_eq!(value, [0, 0, 0, 0, 0, 0, 1, 2]);
        let headers = [("other", &b"x"[..]), (name, &value[..])];
        assert_eq!(
            schema_id(headers, Part::Value),
            Some(SchemaId::ContentId(0x0102))
        );
        assert_eq!(schema_id(headers, Part::Key), None);
    }

    #[test]
    fn content_id_wins_and_malformed_values_are_ignored() {
        let global = 7u64.to_be_bytes();
        let content = 3u64.to_be_bytes();
        let headers = [
            (VALUE_GLOBAL_ID, &global[..]),
            (VALUE_CONTENT_ID, &b"short"[..]),
        ];
        assert_eq!(schema_id(headers, Part::Value), Some(SchemaId::GlobalId(7)));
        let headers = [
            (VALUE_GLOBAL_ID, &global[..]),
            (VALUE_CONTENT_ID, &content[..]),
        ];
        assert_eq!(
            schema_id(headers, Part::Value),
            Some(SchemaId::ContentId(3))
        );
    }
}
