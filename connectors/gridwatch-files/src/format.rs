//! Which format a file is: magic bytes first, then the extension, then a
//! look at the first text.

use std::fmt;
use std::path::Path;

use crate::FileError;

/// A file format the readers understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Comma-separated with a header row.
    Csv,
    /// One JSON reading per line.
    Ndjson,
    /// An Avro object container file.
    Avro,
    /// Apache Parquet.
    Parquet,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Csv => "CSV",
            Self::Ndjson => "NDJSON",
            Self::Avro => "Avro",
            Self::Parquet => "Parquet",
        })
    }
}

/// Parquet files start (and end) with `PAR1`.
pub const PARQUET_MAGIC: &[u8; 4] = b"PAR1";
/// Avro object container files start with `Obj` and version 1.
pub const AVRO_MAGIC: &[u8; 4] = b"Obj\x01";
const GZIP_MAGIC: &[u8; 2] = b"\x1f\x8b";
const ZSTD_MAGIC: &[u8; 4] = b"\x28\xb5\x2f\xfd";

/// Detects the format from the path and the file's first bytes.
///
/// Magic bytes win over the extension, so a misnamed binary file is still
/// read right; an extension that names a binary format the bytes are not is
/// an error rather than a guess.
pub fn detect(path: &Path, head: &[u8]) -> Result<Format, FileError> {
    if head.starts_with(PARQUET_MAGIC) {
        return Ok(Format::Parquet);
    }
    if head.starts_with(AVRO_MAGIC) {
        return Ok(Format::Avro);
    }
    if head.starts_with(GZIP_MAGIC) || head.starts_with(ZSTD_MAGIC) {
        return Err(FileError::UnknownFormat {
            path: path.to_path_buf(),
            detail: "the file is compressed (gzip or zstd); decompress it first".into(),
        });
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let not = |format: Format, magic: &[u8]| FileError::NotFormat {
        path: path.to_path_buf(),
        format,
        detail: format!(
            "it does not start with {:?}",
            String::from_utf8_lossy(magic)
        ),
    };
    match ext.as_deref() {
        Some("parquet" | "parq" | "pq") => return Err(not(Format::Parquet, PARQUET_MAGIC)),
        Some("avro") => return Err(not(Format::Avro, AVRO_MAGIC)),
        Some("csv") => return Ok(Format::Csv),
        Some("ndjson" | "jsonl" | "json") => return Ok(Format::Ndjson),
        _ => {}
    }
    // Unknown extension: a JSON object on the first line means NDJSON; a
    // header row naming meter_id means CSV.
    let text = String::from_utf8_lossy(head);
    let first = text.trim_start_matches('\u{feff}').trim_start();
    if first.starts_with('{') {
        return Ok(Format::Ndjson);
    }
    if first.lines().next().is_some_and(|l| l.contains("meter_id")) {
        return Ok(Format::Csv);
    }
    Err(FileError::UnknownFormat {
        path: path.to_path_buf(),
        detail: if head.is_empty() {
            "the file is empty".into()
        } else {
            "no known magic bytes, extension or header".into()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, head: &[u8]) -> Result<Format, FileError> {
        detect(Path::new(name), head)
    }

    #[test]
    fn magic_beats_extension() {
        assert_eq!(d("x.csv", b"PAR1\x15\x04").unwrap(), Format::Parquet);
        assert_eq!(d("x.bin", b"Obj\x01\x04\x14").unwrap(), Format::Avro);
        assert_eq!(d("x.parquet", b"PAR1").unwrap(), Format::Parquet);
    }

    #[test]
    fn extensions_and_sniffing() {
        assert_eq!(d("x.CSV", b"a,b").unwrap(), Format::Csv);
        assert_eq!(d("x.jsonl", b"").unwrap(), Format::Ndjson);
        assert_eq!(d("x.txt", b"\n {\"meter_id\":1}").unwrap(), Format::Ndjson);
        assert_eq!(d("x", b"meter_id,timestamp\n").unwrap(), Format::Csv);
    }

    #[test]
    fn refusals_say_why() {
        let e = d("x.parquet", b"meter_id,").unwrap_err().to_string();
        assert_eq!(
            e,
            "x.parquet: not a Parquet file: it does not start with \"PAR1\""
        );
        let e = d("x.csv.gz", b"\x1f\x8b\x08").unwrap_err().to_string();
        assert!(e.contains("compressed"), "{e}");
        let e = d("x.dat", b"").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        assert!(d("x.dat", b"\x00\x01\x02").is_err());
    }
}
