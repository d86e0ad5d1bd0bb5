//! The ingest API's NDJSON body parser: every non-blank line is either a
//! reading or a dead letter carrying exactly that line.
#![no_main]

use gridwatch_runtime::backend::embedded::EmbeddedBackend;
use gridwatch_runtime::ingest::Ingest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ok, bad) = Ingest::<EmbeddedBackend>::parse_ndjson(data);
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    assert_eq!(ok.len() + bad.len(), lines.len(), "every line is counted once");
    for d in &bad {
        assert!(lines.contains(&d.original.as_slice()), "a dead letter keeps its line");
        assert_eq!(d.stage, "ingest");
    }
});
