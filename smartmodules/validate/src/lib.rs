//! The `validate` SmartModule: the first link of Gridwatch's chain.
//!
//! A thin shell over [`gridwatch_validator`]: `init` parses the params once,
//! `map` turns each record into an `io.gridwatch.ChainRecord` (the reading,
//! or a dead letter with the reason). See `SmartModule.toml` for the params.

use std::sync::OnceLock;

use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{RecordData, SmartModuleRecord, eyre, smartmodule};
use gridwatch_contracts::ChainRecord;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_validator::{ValidateConfig, record_clock, validate_record};

/// The SmartModule ABI's result, kept apart from `std`'s.
type SmResult<T> = fluvio_smartmodule::Result<T>;

static CONFIG: OnceLock<ValidateConfig> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> SmResult<()> {
    let config = ValidateConfig::from_params(|key| params.get(key).map(String::as_str))
        .map_err(|e| eyre!("{e}"))?;
    // A second init (the engine re-instantiating the module) keeps the first.
    let _ = CONFIG.set(config);
    Ok(())
}

#[smartmodule(map)]
pub fn map(record: &SmartModuleRecord) -> SmResult<(Option<RecordData>, RecordData)> {
    let config = CONFIG.get_or_init(ValidateConfig::default);
    let now = record_clock(record.timestamp());
    let out = validate_record(record.value().as_ref(), record.offset(), config, now);
    let key = match &out {
        ChainRecord::Reading(r) => Some(RecordData::from(r.meter_id.as_bytes().to_vec())),
        _ => record.key().cloned(),
    };
    Ok((key, RecordData::from(out.to_avro()?)))
}
