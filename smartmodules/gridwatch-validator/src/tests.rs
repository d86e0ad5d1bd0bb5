use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::model::reason;
use gridwatch_contracts::{ChainRecord, MeterStatus, SensorReading, schema};

use super::*;

const NOW: i64 = 1_767_225_600_000;

fn reading() -> SensorReading {
    SensorReading {
        meter_id: "feeder-a-001".into(),
        timestamp: NOW - 1000,
        voltage: 230.0,
        current: 5.0,
        temperature: 21.0,
        status: MeterStatus::Ok,
    }
}

fn config_with_schema(id: u64) -> ValidateConfig {
    let schemas = serde_json::json!({ id.to_string(): schema::SENSOR_READING }).to_string();
    ValidateConfig::from_params(|k| (k == "schemas").then_some(schemas.as_str())).unwrap()
}

fn framed(r: &SensorReading, id: u64, width: IdWidth) -> Vec<u8> {
    let mut out = Vec::new();
    framing::write_header(&mut out, id, width);
    r.encode_into(&mut out).unwrap();
    out
}

fn reason_of(bytes: &[u8], config: &ValidateConfig) -> &'static str {
    validate(bytes, config, NOW).unwrap_err().reason
}

#[test]
fn framed_avro_with_a_known_id_is_accepted() {
    let config = config_with_schema(7);
    let r = reading();
    assert_eq!(
        validate(&framed(&r, 7, IdWidth::ContentId4), &config, NOW),
        Ok(r)
    );
}

#[test]
fn legacy_global_id_framing_is_accepted_when_configured() {
    let schemas = serde_json::json!({ "9": schema::SENSOR_READING }).to_string();
    let config = ValidateConfig::from_params(|k| match k {
        "schemas" => Some(schemas.as_str()),
        "id_width" => Some("global-id-8"),
        _ => None,
    })
    .unwrap();
    let r = reading();
    assert_eq!(
        validate(&framed(&r, 9, IdWidth::GlobalId8), &config, NOW),
        Ok(r)
    );
}

#[test]
fn json_is_accepted() {
    let json = br#"{"meter_id":"m-1","timestamp":1767225599000,"voltage":231,"current":4.9,"temperature":20,"status":"DEGRADED"}"#;
    let r = validate(json, &ValidateConfig::default(), NOW).unwrap();
    assert_eq!(r.status, MeterStatus::Degraded);
}

#[test]
fn malformed_input_is_rejected_with_a_reason() {
    let config = config_with_schema(7);
    let good = framed(&reading(), 7, IdWidth::ContentId4);
    assert_eq!(reason_of(b"", &config), reason::UNPARSEABLE);
    assert_eq!(reason_of(b"\x01garbage", &config), reason::UNPARSEABLE);
    assert_eq!(reason_of(&good[..3], &config), reason::UNPARSEABLE);
    assert_eq!(
        reason_of(&good[..good.len() - 3], &config),
        reason::SCHEMA_MISMATCH
    );
    assert_eq!(
        reason_of(&framed(&reading(), 8, IdWidth::ContentId4), &config),
        reason::UNKNOWN_SCHEMA
    );
    assert_eq!(reason_of(b"{\"meter_id\":", &config), reason::UNPARSEABLE);
    assert_eq!(
        reason_of(&[b'{', 0xff, 0xfe, b'}'], &config),
        reason::UNPARSEABLE
    );
}

#[test]
fn meaning_is_checked_not_just_shape() {
    let config = ValidateConfig::default();
    type Mutation = Box<dyn Fn(&mut SensorReading)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|r| r.meter_id = "  ".into()),
            reason::INVALID_METER_ID,
        ),
        (
            Box::new(|r| r.meter_id = "x".repeat(129)),
            reason::INVALID_METER_ID,
        ),
        (
            Box::new(|r| r.meter_id = "a\nb".into()),
            reason::INVALID_METER_ID,
        ),
        (Box::new(|r| r.voltage = f64::NAN), reason::NOT_FINITE),
        (Box::new(|r| r.current = f64::INFINITY), reason::NOT_FINITE),
        (
            Box::new(|r| r.temperature = f64::NEG_INFINITY),
            reason::NOT_FINITE,
        ),
        (Box::new(|r| r.voltage = -1.0), reason::OUT_OF_RANGE),
        (Box::new(|r| r.voltage = 1000.5), reason::OUT_OF_RANGE),
        (Box::new(|r| r.temperature = 151.0), reason::OUT_OF_RANGE),
        (
            Box::new(|r| r.timestamp = DEFAULT_EARLIEST_MS - 1),
            reason::TIMESTAMP_OUT_OF_RANGE,
        ),
        (
            Box::new(|r| r.timestamp = NOW + 86_400_001),
            reason::TIMESTAMP_OUT_OF_RANGE,
        ),
        (
            Box::new(|r| r.timestamp = i64::MIN),
            reason::TIMESTAMP_OUT_OF_RANGE,
        ),
    ];
    for (mutate, want) in cases {
        let mut r = reading();
        mutate(&mut r);
        assert_eq!(check(&r, &config, NOW).unwrap_err().reason, want, "{r:?}");
    }
    // Boundaries are inclusive; an outage (0 V) and history are accepted.
    for mutate in [
        |r: &mut SensorReading| r.voltage = 0.0,
        |r: &mut SensorReading| r.timestamp = DEFAULT_EARLIEST_MS,
        |r: &mut SensorReading| r.timestamp = NOW + 86_400_000,
        |r: &mut SensorReading| r.meter_id = "x".repeat(128),
    ] {
        let mut r = reading();
        mutate(&mut r);
        check(&r, &config, NOW).unwrap();
    }
}

#[test]
fn rejections_become_dead_letters_with_the_original_bytes() {
    let bytes = b"\x07nope";
    let ChainRecord::DeadLetter(d) = validate_record(bytes, 42, &ValidateConfig::default(), NOW)
    else {
        panic!("a dead letter")
    };
    assert_eq!(
        (d.reason.as_str(), d.stage.as_str()),
        (reason::UNPARSEABLE, STAGE)
    );
    assert_eq!(
        (d.source_offset, d.original.as_slice()),
        (Some(42), &bytes[..])
    );
    assert_eq!((d.first_failed_at, d.attempts), (NOW, 1));
}

#[test]
fn bad_params_name_the_key_the_value_and_what_is_allowed() {
    let err = ValidateConfig::from_params(|k| (k == "voltage_max").then_some("lots")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "voltage_max = \"lots\" is not allowed: a finite number"
    );
    let err = ValidateConfig::from_params(|k| (k == "voltage_min").then_some("2000")).unwrap_err();
    assert_eq!(err.key, "voltage_min");
    let err = ValidateConfig::from_params(|k| (k == "id_width").then_some("16")).unwrap_err();
    assert_eq!(err.allowed, "content-id-4 or global-id-8");
    let err = ValidateConfig::from_params(|k| (k == "schemas").then_some(r#"{"1": "{bad"}"#))
        .unwrap_err();
    assert_eq!(err.key, "schemas.1");
    let err = ValidateConfig::from_params(|k| (k == "earliest").then_some("2000")).unwrap_err();
    assert_eq!(err.key, "earliest");
}

#[test]
fn params_round_trip() {
    let c = ValidateConfig::default();
    let params = c.to_params();
    let back = ValidateConfig::from_params(|k| {
        params.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str())
    })
    .unwrap();
    assert_eq!(back.to_params(), params);
    assert_eq!(back.earliest_ms, DEFAULT_EARLIEST_MS);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let config = config_with_schema(1);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..400 {
        let bytes: Vec<u8> = (0..len)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if i == 0 && len % 3 == 0 {
                    0
                } else {
                    seed as u8
                }
            })
            .collect();
        let _ = validate_record(&bytes, 0, &config, NOW);
    }
}

#[test]
fn validate_into_writes_what_validate_record_writes() {
    let v1 = config_with_schema(7);
    // The same schema with its fields' docs dropped: resolved, not hand-decoded.
    let mut other: serde_json::Value = serde_json::from_str(schema::SENSOR_READING).unwrap();
    other["doc"] = serde_json::Value::Null;
    let text = serde_json::json!({ "7": other.to_string() }).to_string();
    let resolved =
        ValidateConfig::from_params(|k| (k == "schemas").then_some(text.as_str())).unwrap();
    assert!(v1.v1_ids.contains(&7));
    assert!(resolved.v1_ids.is_empty());

    let mut inputs = Vec::new();
    let base = reading();
    let variants = [
        base.clone(),
        SensorReading {
            voltage: 5000.0,
            ..base.clone()
        },
        SensorReading {
            current: f64::NAN,
            ..base.clone()
        },
        SensorReading {
            meter_id: String::new(),
            ..base.clone()
        },
        SensorReading {
            meter_id: "a\u{7}b".into(),
            ..base.clone()
        },
        SensorReading {
            meter_id: "x".repeat(300),
            ..base.clone()
        },
        SensorReading {
            timestamp: NOW + 10 * 86_400_000,
            ..base.clone()
        },
        SensorReading {
            timestamp: 0,
            ..base.clone()
        },
        SensorReading {
            status: MeterStatus::Failure,
            ..base.clone()
        },
    ];
    for r in &variants {
        inputs.push(framed(r, 7, IdWidth::ContentId4));
        inputs.push(framed(r, 8, IdWidth::ContentId4));
        let mut truncated = framed(r, 7, IdWidth::ContentId4);
        truncated.pop();
        inputs.push(truncated);
        let mut longer = framed(r, 7, IdWidth::ContentId4);
        longer.push(0);
        inputs.push(longer);
    }
    inputs.push(br#"{"meter_id":"m-1","timestamp":1767225599000,"voltage":230.0,"current":5.0,"temperature":21.0}"#.to_vec());
    inputs.push(b"  ".to_vec());
    inputs.push(vec![0]);
    inputs.push(vec![0xff, 0]);
    for config in [&v1, &resolved] {
        for (offset, bytes) in inputs.iter().enumerate() {
            let expected = validate_record(bytes, offset as i64, config, NOW);
            let mut out = Vec::new();
            let key = validate_into(bytes, offset as i64, config, NOW, &mut out).unwrap();
            assert_eq!(out, expected.to_avro().unwrap(), "input {offset}");
            match expected {
                ChainRecord::Reading(r) => assert_eq!(key.as_deref(), Some(r.meter_id.as_str())),
                _ => assert!(key.is_none()),
            }
        }
    }
}
