//! Schema-registry wire framing: `0x00`, the schema id (big-endian), the datum.
//!
//! Apicurio Registry v3 serdes default to a 4-byte contentId, which is
//! byte-identical to Confluent's framing; Apicurio v2 serdes wrote an 8-byte
//! globalId, kept here for older topics.

use serde::{Deserialize, Serialize};

/// The first byte of every framed message.
pub const MAGIC: u8 = 0;

/// How wide the schema id after the magic byte is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdWidth {
    /// Apicurio v3 and Confluent: a 4-byte contentId (or Confluent schema id).
    #[default]
    ContentId4,
    /// Apicurio v2 legacy: an 8-byte globalId.
    GlobalId8,
}

impl IdWidth {
    fn len(self) -> usize {
        match self {
            Self::ContentId4 => 4,
            Self::GlobalId8 => 8,
        }
    }
}

/// Why bytes are not a framed datum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("message is empty")]
    Empty,
    #[error("first byte is {found:#04x}, expected the magic byte 0x00")]
    WrongMagic { found: u8 },
    #[error("message is {len} bytes, too short for the magic byte and a {width}-byte schema id")]
    Truncated { len: usize, width: usize },
}

/// A framed message split into its schema id and datum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema_id: u64,
    pub datum: &'a [u8],
}

/// Splits a framed message. The datum may be empty; decoding it decides.
pub fn parse(bytes: &[u8], width: IdWidth) -> Result<Framed<'_>, FramingError> {
    let (&magic, rest) = bytes.split_first().ok_or(FramingError::Empty)?;
    if magic != MAGIC {
        return Err(FramingError::WrongMagic { found: magic });
    }
    let n = width.len();
    if rest.len() < n {
        return Err(FramingError::Truncated {
            len: bytes.len(),
            width: n,
        });
    }
    let (id, datum) = rest.split_at(n);
    let schema_id = id.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Ok(Framed { schema_id, datum })
}

/// Writes the magic byte and schema id; the caller appends the datum.
///
/// A 4-byte id keeps the low 32 bits, as Apicurio's contentIds always fit.
pub fn write_header(out: &mut Vec<u8>, schema_id: u64, width: IdWidth) {
    out.push(MAGIC);
    match width {
        IdWidth::ContentId4 => out.extend_from_slice(&(schema_id as u32).to_be_bytes()),
        IdWidth::GlobalId8 => out.extend_from_slice(&schema_id.to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_id_frame_is_confluent_compatible() {
        let mut out = Vec::new();
        write_header(&mut out, 0x0102_0304, IdWidth::ContentId4);
        out.extend_from_slice(b"datum");
        assert_eq!(&out[..5], &[0, 1, 2, 3, 4]);
        let framed = parse(&out, IdWidth::ContentId4).unwrap();
        assert_eq!(framed.schema_id, 0x0102_0304);
        assert_eq!(framed.datum, b"datum");
    }

    #[test]
    fn global_id_frame_uses_eight_bytes() {
        let mut out = Vec::new();
        write_header(&mut out, 7, IdWidth::GlobalId8);
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(parse(&out, IdWidth::GlobalId8).unwrap().schema_id, 7);
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        assert_eq!(parse(&[], IdWidth::ContentId4), Err(FramingError::Empty));
        assert_eq!(
            parse(&[1, 0, 0, 0, 1], IdWidth::ContentId4),
            Err(FramingError::WrongMagic { found: 1 })
        );
        assert_eq!(
            parse(&[0, 0, 1], IdWidth::ContentId4),
            Err(FramingError::Truncated { len: 3, width: 4 })
        );
    }
}
