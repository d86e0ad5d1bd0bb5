//! The ingest API's JSON-array body parser: each element is a reading or a
//! dead letter; a body that is not an array is one dead letter with it all.
#![no_main]

use gridwatch_runtime::backend::embedded::EmbeddedBackend;
use gridwatch_runtime::ingest::Ingest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ok, bad) = Ingest::<EmbeddedBackend>::parse_json_array(data);
    match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(data) {
        Ok(items) => assert_eq!(ok.len() + bad.len(), items.len()),
        Err(_) => {
            assert!(ok.is_empty());
            assert_eq!(bad.len(), 1);
            assert_eq!(bad[0].original, data);
        }
    }
});
