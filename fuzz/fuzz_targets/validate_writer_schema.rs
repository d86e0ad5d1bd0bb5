//! validate's `schemas` param (writer schemas as the registry hands them
//! over) and decoding with whatever writer schema parses.
//!
//! Input: the schema text, a NUL byte, then an Avro datum. The text is used
//! both as the whole `schemas` param and as the one schema under id 1.
#![no_main]

use gridwatch_contracts::framing::{IdWidth, write_header};
use gridwatch_fuzz::NOW;
use gridwatch_validator::{ValidateConfig, validate_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (text, datum) = data.split_at(split);
    let datum = datum.get(1..).unwrap_or_default();
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let wrapped = serde_json::json!({ "1": text }).to_string();
    for param in [text, wrapped.as_str()] {
        let Ok(config) = ValidateConfig::from_params(|k| (k == "schemas").then_some(param)) else {
            continue;
        };
        for &id in config.schemas.keys() {
            let mut record = Vec::with_capacity(datum.len() + 5);
            write_header(&mut record, id, IdWidth::ContentId4);
            record.extend_from_slice(datum);
            let _ = validate_record(&record, 0, &config, NOW);
        }
    }
});
