//! Fixtures shared by the host's integration tests: the real Gridwatch
//! modules, their params, and inputs encoded the way producers encode them.

#![allow(dead_code)]

use std::sync::OnceLock;

use gridwatch_contracts::ChainRecord;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_tests::inputs::schemas_param;
use gridwatch_tests::modules;
use gridwatch_wasm_host::{ChainBuilder, Engine, ModuleSpec};

pub fn validate_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| modules::module("gridwatch_validate"))
}

pub fn detect_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| modules::module("gridwatch_detect"))
}

/// One engine for all tests of a binary, so each module compiles once.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new().expect("engine"))
}

/// validate → detect with the test schemas and extra detect params.
pub fn gridwatch_chain(detect_params: &[(&str, &str)]) -> ChainBuilder {
    let mut detect = ModuleSpec::wasm("detect", detect_wasm()).param("schemas", schemas_param());
    for (k, v) in detect_params {
        detect = detect.param(*k, *v);
    }
    engine()
        .chain()
        .module(ModuleSpec::wasm("validate", validate_wasm()).param("schemas", schemas_param()))
        .module(detect)
}

/// The chain record with the wall-clock field zeroed, re-encoded: what must
/// be byte-identical between two hosts.
pub fn comparable(value: &[u8]) -> (ChainRecord, Vec<u8>) {
    let mut record = ChainRecord::from_avro(value).expect("output is a ChainRecord");
    if let ChainRecord::Scored(s) = &mut record {
        for a in &mut s.anomalies {
            a.detected_at = 0;
        }
    }
    let bytes = record.to_avro().expect("avro");
    (record, bytes)
}

/// Resident set size of this process, from /proc/self/status.
pub fn rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
