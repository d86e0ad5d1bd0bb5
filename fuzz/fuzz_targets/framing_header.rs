//! The Apicurio / Confluent framing header parser, both id widths: what it
//! accepts must be exactly a header followed by the datum it returns.
#![no_main]

use gridwatch_contracts::framing::{IdWidth, parse, write_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for width in [IdWidth::ContentId4, IdWidth::GlobalId8] {
        if let Ok(framed) = parse(data, width) {
            let mut again = Vec::with_capacity(data.len());
            write_header(&mut again, framed.schema_id, width);
            again.extend_from_slice(framed.datum);
            assert_eq!(again, data, "{width:?} header does not round-trip");
        }
    }
});
