//! Tests across the modules: the stream's properties, determinism, the
//! driver's pacing and backpressure, and detection scored with the real
//! detector and validator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridwatch_contracts::{AnomalyType, MeterStatus, SensorReading};
use gridwatch_detector::{Detector, DetectorConfig};
use gridwatch_validator::ValidateConfig;

use crate::*;

/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600_000;

fn sim(config: SimulatorConfig) -> Simulator {
    Simulator::starting_at(config, START).unwrap()
}

fn small() -> SimulatorConfig {
    SimulatorConfig {
        meters: 20,
        feeders: 4,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_events_different_seed_different_events() {
    let a: Vec<SimEvent> = sim(small()).take(50_000).collect();
    let b: Vec<SimEvent> = sim(small()).take(50_000).collect();
    assert_eq!(a, b);
    let c: Vec<SimEvent> = sim(SimulatorConfig {
        seed: 43,
        ..small()
    })
    .take(50_000)
    .collect();
    assert_ne!(a, c);
    let differing = a.iter().zip(&c).filter(|(x, y)| x != y).count();
    assert!(differing > 45_000, "{differing}");
}

#[test]
fn batching_does_not_change_the_stream() {
    let whole: Vec<SimEvent> = sim(small()).take(10_000).collect();
    let mut s = sim(small());
    let mut pieces = Vec::new();
    let mut n = 1;
    while pieces.len() < 10_000 {
        let want = n.min(10_000 - pieces.len());
        s.fill(&mut pieces, want);
        n = n * 3 + 1;
    }
    assert_eq!(whole, pieces);
}

#[test]
fn meters_interleave_in_event_time_and_timestamps_never_go_back() {
    let config = SimulatorConfig {
        meters: 1000,
        feeders: 7,
        ..Default::default()
    };
    let mut s = sim(config);
    let ids: Vec<String> = s.meter_ids().map(String::from).collect();
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids[0], "feeder-0-meter-0");
    assert_eq!(ids[999], "feeder-6-meter-142");
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 1000);

    let mut previous = i64::MIN;
    for (k, event) in s.by_ref().take(3000).enumerate() {
        let (id, ts) = match &event {
            SimEvent::Reading(r, _) => (r.meter_id.clone(), r.timestamp),
            SimEvent::Malformed(_, l) => (l.meter_id.clone(), l.timestamp),
        };
        assert_eq!(id, ids[k % 1000]);
        // Meter i of n reads i/n of the way through each 1 s tick.
        assert_eq!(ts, START + (k / 1000) as i64 * 1000 + (k % 1000) as i64);
        assert!(ts >= previous);
        previous = ts;
    }
    assert_eq!(s.next_timestamp(), START + 3000);
}

#[test]
fn max_events_ends_the_stream() {
    let mut s = sim(SimulatorConfig {
        max_events: Some(25),
        ..small()
    });
    assert_eq!(s.next_batch(10).len(), 10);
    assert_eq!(s.remaining(), Some(15));
    assert_eq!(s.by_ref().count(), 15);
    assert!(s.next_batch(10).is_empty());
}

/// Runs `config` for `hours` of event time into the detector and collects
/// labels, detections and every reading's status counts.
struct Run {
    labels: Vec<Label>,
    detections: Vec<Detection>,
    readings: u64,
    malformed: u64,
    warmup_end: i64,
}

fn run_detector(config: SimulatorConfig, hours: f64) -> Run {
    let mut s = sim(config);
    let events = (hours * 3600.0 * f64::from(s.config().meters) * 1000.0
        / s.config().interval_ms() as f64) as usize;
    let mut detector = Detector::new(DetectorConfig::default());
    let mut run = Run {
        labels: Vec::new(),
        detections: Vec::new(),
        readings: 0,
        malformed: 0,
        warmup_end: s.warmup_end_ms(),
    };
    let mut batch = Vec::new();
    let mut offset = 0i64;
    let mut left = events;
    while left > 0 {
        batch.clear();
        left -= s.fill(&mut batch, left.min(4096));
        for event in batch.drain(..) {
            match event {
                SimEvent::Reading(reading, label) => {
                    run.readings += 1;
                    let scored = detector.process(&reading, offset, 0);
                    offset += 1;
                    run.detections
                        .extend(scored.anomalies.iter().map(Detection::from));
                    run.labels.extend(label);
                }
                SimEvent::Malformed(_, label) => {
                    run.malformed += 1;
                    run.labels.push(label);
                }
            }
        }
    }
    run
}

/// The acceptance test for fault magnitudes and spacing: with the defaults,
/// Gridwatch's own detector finds the injected faults and little else.
#[test]
fn the_detector_finds_the_injected_faults_with_high_precision_and_recall() {
    let config = SimulatorConfig::default();
    let run = run_detector(config, 6.0);
    let options = ScoreOptions {
        ignore_before: Some(run.warmup_end),
        ..Default::default()
    };
    let score = score(&run.labels, &run.detections, options);
    println!(
        "{} readings, {} malformed\n{score}",
        run.readings, run.malformed
    );
    for kind in FaultKind::ALL {
        let k = score
            .kind(kind)
            .unwrap_or_else(|| panic!("no {kind} labels in six hours"));
        assert!(k.labels >= 10, "{kind}: only {} labels", k.labels);
        if kind.detectable() {
            let (p, r) = (k.precision().unwrap(), k.recall().unwrap());
            assert!(p >= 0.9 && r >= 0.9, "{kind}: precision {p}, recall {r}");
        }
    }
    assert!(score.precision().unwrap() >= 0.9);
    assert!(score.recall().unwrap() >= 0.9);
}

/// Faults are the only thing the detector flags: a clean stream gives
/// (almost) nothing after the warm-up.
#[test]
fn a_fault_free_stream_raises_no_anomalies_after_warmup() {
    let config = SimulatorConfig {
        faults: FaultConfig::none(),
        ..Default::default()
    };
    let run = run_detector(config, 2.0);
    assert!(run.labels.is_empty());
    let late = run
        .detections
        .iter()
        .filter(|d| d.timestamp >= run.warmup_end)
        .count();
    println!(
        "fault-free: {} readings, {} anomalies in warm-up, {late} after",
        run.readings,
        run.detections.len() - late
    );
    assert!(late <= 2, "{late} anomalies on a clean stream");
}

/// Episodes per kind: labels of one meter (one feeder for feeder sags) and
/// kind closer than `gap_ms` belong to one episode; a failure's recovery
/// label is not a new episode, and every malformed payload is one.
fn episodes(labels: &[Label], gap_ms: i64) -> HashMap<FaultKind, u64> {
    let mut last: HashMap<(&str, FaultKind), i64> = HashMap::new();
    let mut counts = HashMap::new();
    for l in labels {
        if l.expected == Expected::Anomaly(AnomalyType::EquipmentRecovered)
            && l.kind == FaultKind::Failure
        {
            continue;
        }
        let unit = match l.kind {
            FaultKind::FeederSag => l.meter_id.split("-meter-").next().unwrap_or_default(),
            _ => l.meter_id.as_str(),
        };
        let key = (unit, l.kind);
        let new = l.kind == FaultKind::Malformed
            || last.get(&key).is_none_or(|&t| l.timestamp - t > gap_ms);
        if new {
            *counts.entry(l.kind).or_default() += 1;
        }
        last.insert(key, l.timestamp);
    }
    counts
}

#[test]
fn faults_arrive_at_about_the_configured_rates() {
    let config = SimulatorConfig {
        meters: 500,
        feeders: 25,
        faults: FaultConfig {
            surge_rate: 1.0,
            sag_rate: 1.0,
            feeder_sag_rate: 1.0,
            failure_rate: 0.5,
            degraded_rate: 0.5,
            flapping_rate: 0.5,
            stuck_rate: 0.5,
            malformed_rate: 2.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let f = config.faults.clone();
    let hours = 2.0;
    let mut s = sim(config);
    let events = (hours * 3600.0 * 500.0) as usize;
    let mut labels = Vec::new();
    for event in s.by_ref().take(events) {
        labels.extend(event.label().cloned());
    }
    let faulty_hours = hours - f.warmup.as_secs_f64() / 3600.0;
    let counts = episodes(&labels, 60_000);
    for (kind, rate, units) in [
        (FaultKind::Surge, f.surge_rate, 500.0),
        (FaultKind::Sag, f.sag_rate, 500.0),
        (FaultKind::FeederSag, f.feeder_sag_rate, 25.0),
        (FaultKind::Failure, f.failure_rate, 500.0),
        (FaultKind::Degraded, f.degraded_rate, 500.0),
        (FaultKind::Flapping, f.flapping_rate, 500.0),
        (FaultKind::Stuck, f.stuck_rate, 500.0),
        (FaultKind::Malformed, f.malformed_rate, 500.0),
    ] {
        let expected = rate * units * faulty_hours;
        let got = counts.get(&kind).copied().unwrap_or(0) as f64;
        println!("{kind}: {got} episodes, expected {expected:.0}");
        // Several standard deviations of a Poisson count, and 15 % for the
        // approximations in how gaps are accounted for.
        let tolerance = 4.0 * expected.sqrt() + 0.15 * expected;
        assert!(
            (got - expected).abs() <= tolerance,
            "{kind}: {got} episodes, expected {expected:.0} ± {tolerance:.0}"
        );
    }
    // Nothing during the warm-up.
    let warmup_end = s.warmup_end_ms();
    assert!(labels.iter().all(|l| l.timestamp >= warmup_end));
}

#[test]
fn every_reading_passes_validation_and_every_malformed_payload_is_dead_lettered() {
    let config = SimulatorConfig {
        faults: FaultConfig {
            malformed_rate: 30.0,
            failure_rate: 1.0,
            surge_rate: 2.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let validate = ValidateConfig::default();
    let mut shapes = HashMap::new();
    let mut statuses = HashMap::new();
    for event in sim(config).take(100 * 3600) {
        match event {
            SimEvent::Reading(reading, _) => {
                let now = reading.timestamp;
                let json = serde_json::to_vec(&reading).unwrap();
                let back = gridwatch_validator::validate(&json, &validate, now)
                    .unwrap_or_else(|r| panic!("{reading:?} refused: {r:?}"));
                assert_eq!(back, reading);
                *statuses.entry(reading.status).or_insert(0u64) += 1;
            }
            SimEvent::Malformed(bytes, label) => {
                let Expected::DeadLetter(shape) = label.expected else {
                    panic!("{label:?}")
                };
                let rejection = gridwatch_validator::validate(&bytes, &validate, label.timestamp)
                    .expect_err(&String::from_utf8_lossy(&bytes));
                assert_eq!(rejection.reason, shape.reason(), "{shape:?}: {rejection:?}");
                *shapes.entry(shape).or_insert(0u32) += 1;
            }
        }
    }
    assert_eq!(shapes.len(), Malformation::ALL.len(), "{shapes:?}");
    assert!(statuses.len() == 3, "{statuses:?}");
}

#[test]
fn readings_look_like_a_grid() {
    // A day of one feeder's meters every minute: the evening peak sags the
    // voltage and raises the current.
    let config = SimulatorConfig {
        meters: 50,
        feeders: 1,
        interval: Duration::from_secs(60),
        faults: FaultConfig::none(),
        ..Default::default()
    };
    let mut by_hour: HashMap<i64, (f64, f64, f64, u32)> = HashMap::new();
    for event in sim(config).take(50 * 24 * 60) {
        let Some(SensorReading {
            timestamp,
            voltage,
            current,
            temperature,
            status,
            ..
        }) = event.reading().cloned()
        else {
            panic!("malformed without faults")
        };
        assert_eq!(status, MeterStatus::Ok);
        assert!((205.0..=245.0).contains(&voltage), "{voltage}");
        assert!((0.0..=60.0).contains(&current), "{current}");
        assert!((-20.0..=60.0).contains(&temperature), "{temperature}");
        let e = by_hour.entry((timestamp - START) / 3_600_000).or_default();
        *e = (e.0 + voltage, e.1 + current, e.2 + temperature, e.3 + 1);
    }
    let mean = |h: i64| {
        let (v, i, t, n) = by_hour[&h];
        let n = f64::from(n);
        (v / n, i / n, t / n)
    };
    let (night_v, night_i, _) = mean(3);
    let (peak_v, peak_i, _) = mean(19);
    println!("03:00 {night_v:.1} V {night_i:.1} A; 19:00 {peak_v:.1} V {peak_i:.1} A");
    assert!(peak_v < night_v - 1.5);
    assert!(peak_i > 1.8 * night_i);
    assert!((night_v - 230.0).abs() < 5.0);
}

#[test]
fn a_stuck_meter_repeats_its_reading_exactly() {
    let config = SimulatorConfig {
        faults: FaultConfig {
            stuck_rate: 2.0,
            ..FaultConfig::none()
        },
        ..Default::default()
    };
    let mut by_meter: HashMap<String, Vec<SensorReading>> = HashMap::new();
    let mut stuck_at = Vec::new();
    for event in sim(config).take(100 * 3600) {
        let SimEvent::Reading(reading, label) = event else {
            panic!("malformed without malformed faults")
        };
        if let Some(label) = label {
            assert_eq!(label.expected, Expected::Undetectable);
            stuck_at.push((label.meter_id, by_meter[&reading.meter_id].len()));
        }
        by_meter
            .entry(reading.meter_id.clone())
            .or_default()
            .push(reading);
    }
    assert!(stuck_at.len() >= 50, "{}", stuck_at.len());
    for (meter, at) in stuck_at {
        let readings = &by_meter[&meter];
        let first = &readings[at];
        // Default stuck_duration 30 s: at least 15 repeats.
        for r in readings.iter().skip(at + 1).take(15) {
            assert_eq!(
                (r.voltage, r.current, r.temperature, r.status),
                (
                    first.voltage,
                    first.current,
                    first.temperature,
                    first.status
                )
            );
            assert!(r.timestamp > first.timestamp);
        }
    }
}

#[test]
fn without_a_start_the_first_reading_is_now() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let s = Simulator::new(small()).unwrap();
    assert!((s.start_ms() - before).abs() < 5_000);
    assert_eq!(s.next_timestamp(), s.start_ms());
    let fixed = Simulator::new(SimulatorConfig {
        start: Some(std::time::UNIX_EPOCH + Duration::from_millis(START as u64)),
        ..small()
    })
    .unwrap();
    assert_eq!(fixed.start_ms(), START);
    assert_eq!(fixed.warmup_end_ms(), START + 300_000);
}

#[test]
fn meters_on_a_feeder_sag_together() {
    // With a feeder sag rate high enough to see some, every ordinary meter
    // of the feeder carries the same label at the same tick.
    let config = SimulatorConfig {
        meters: 40,
        feeders: 4,
        faults: FaultConfig {
            feeder_sag_rate: 5.0,
            ..FaultConfig::none()
        },
        ..Default::default()
    };
    let mut ticks: HashMap<(String, i64), u32> = HashMap::new();
    for event in sim(config).take(40 * 3600) {
        if let Some(label) = event.label() {
            assert_eq!(label.kind, FaultKind::FeederSag);
            let feeder = label.meter_id.split("-meter-").next().unwrap().to_string();
            *ticks.entry((feeder, label.timestamp / 1000)).or_default() += 1;
        }
    }
    assert!(ticks.len() >= 10, "{}", ticks.len());
    assert!(ticks.values().all(|&n| n == 10), "{ticks:?}");
}

// ---- the async driver ----

type Collected = Arc<Mutex<Vec<SimEvent>>>;

fn collecting_sink(
    into: Collected,
) -> impl FnMut(Vec<SimEvent>) -> std::future::Ready<Result<(), std::convert::Infallible>> {
    move |batch| {
        into.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_holds_over_simulated_seconds() {
    for rate in [50.0, 1000.0, 250_000.0] {
        let mut s = sim(small());
        let got: Collected = Arc::default();
        let stats = s
            .run(
                Pace::Rate(rate),
                collecting_sink(got.clone()),
                tokio::time::sleep(Duration::from_secs(10)),
            )
            .await
            .unwrap();
        let expected = rate * 10.0;
        let n = got.lock().unwrap().len() as f64;
        println!("rate {rate}: {n} events in 10 s, {} batches", stats.batches);
        assert_eq!(stats.events as f64, n);
        assert_eq!(stats.stopped, Stopped::Shutdown);
        assert!(
            (n - expected).abs() <= expected * 0.01 + 2.0,
            "rate {rate}: {n}"
        );
        // Batches of about one 10 ms tick at high rates, not one per event.
        if rate >= 1000.0 {
            assert!(stats.batches <= 1001, "{}", stats.batches);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_driver_emits_the_generators_stream() {
    let got: Collected = Arc::default();
    let mut s = sim(small());
    s.run(
        Pace::Rate(5000.0),
        collecting_sink(got.clone()),
        tokio::time::sleep(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    let got = got.lock().unwrap();
    let expected: Vec<SimEvent> = sim(small()).take(got.len()).collect();
    assert_eq!(*got, expected);
    assert_eq!(s.emitted(), got.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn a_slow_sink_slows_the_producer_and_loses_nothing() {
    // The sink takes 100 µs an event (10,000/s); the rate asks for 50,000/s.
    let got: Collected = Arc::default();
    let in_flight = Arc::new(Mutex::new(0usize));
    let sink = {
        let got = got.clone();
        let in_flight = in_flight.clone();
        move |batch: Vec<SimEvent>| {
            let got = got.clone();
            let in_flight = in_flight.clone();
            async move {
                {
                    let mut n = in_flight.lock().unwrap();
                    *n += 1;
                    assert_eq!(*n, 1, "two batches in flight");
                }
                tokio::time::sleep(Duration::from_micros(100) * batch.len() as u32).await;
                got.lock().unwrap().extend(batch);
                *in_flight.lock().unwrap() -= 1;
                Ok::<(), std::convert::Infallible>(())
            }
        }
    };
    let mut s = sim(small());
    s.run(
        Pace::Rate(50_000.0),
        sink,
        tokio::time::sleep(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let got = got.lock().unwrap();
    let n = got.len();
    println!("slow sink: {n} events in 10 s at a 50,000/s rate");
    // 100,000 is what the sink can take in 10 s, against 500,000 asked for;
    // the batch in flight at shutdown is still delivered.
    assert!(n <= 100_000 + 8192, "{n}: the producer did not slow down");
    assert!(n >= 90_000, "{n}");
    let expected: Vec<SimEvent> = sim(small()).take(n).collect();
    assert_eq!(*got, expected, "events lost or reordered");
}

#[tokio::test(start_paused = true)]
async fn flat_out_stops_at_max_events_and_sink_errors_end_the_run() {
    let got: Collected = Arc::default();
    let mut s = sim(SimulatorConfig {
        max_events: Some(100_000),
        ..small()
    });
    let stats = s
        .run(
            Pace::FlatOut,
            collecting_sink(got.clone()),
            std::future::pending(),
        )
        .await
        .unwrap();
    assert_eq!(stats.stopped, Stopped::Limit);
    assert_eq!(stats.events, 100_000);
    assert_eq!(got.lock().unwrap().len(), 100_000);

    let mut s = sim(small());
    let mut calls = 0;
    let err = s
        .run(
            Pace::FlatOut,
            |_batch| {
                calls += 1;
                std::future::ready(if calls == 3 { Err("full") } else { Ok(()) })
            },
            std::future::pending(),
        )
        .await
        .unwrap_err();
    assert_eq!(err, "full");
}

#[tokio::test(start_paused = true)]
async fn real_time_keeps_event_time_with_the_wall_clock() {
    let config = SimulatorConfig {
        meters: 100,
        feeders: 10,
        realtime: true,
        ..Default::default()
    };
    let got: Collected = Arc::default();
    let mut s = sim(config.clone());
    let pace = s.config().pace();
    assert_eq!(pace, Pace::RealTime);
    s.run(
        pace,
        collecting_sink(got.clone()),
        tokio::time::sleep(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let got = got.lock().unwrap();
    let last = match got.last() {
        Some(SimEvent::Reading(r, _)) => r.timestamp,
        Some(SimEvent::Malformed(_, l)) => l.timestamp,
        None => panic!("nothing produced"),
    };
    // 100 meters a second for 30 s, the last reading just before 30 s.
    assert!((got.len() as i64 - 3000).abs() <= 30, "{}", got.len());
    assert!((last - START - 30_000).abs() <= 300, "{}", last - START);
}

#[tokio::test(start_paused = true)]
async fn shutdown_before_the_first_batch_produces_nothing() {
    let got: Collected = Arc::default();
    let mut s = sim(small());
    let stats = s
        .run(
            Pace::FlatOut,
            collecting_sink(got.clone()),
            std::future::ready(()),
        )
        .await
        .unwrap();
    assert_eq!(stats.events, 0);
    assert!(got.lock().unwrap().is_empty());
}

#[test]
fn labels_round_trip_as_json_lines() {
    let label = Label {
        meter_id: "feeder-1-meter-2".into(),
        timestamp: START,
        kind: FaultKind::FeederSag,
        expected: Expected::Anomaly(AnomalyType::VoltageSag),
    };
    let line = serde_json::to_string(&label).unwrap();
    assert_eq!(
        line,
        r#"{"meter_id":"feeder-1-meter-2","timestamp":1767225600000,"kind":"feeder_sag","expected":{"anomaly":"VOLTAGE_SAG"}}"#
    );
    assert_eq!(serde_json::from_str::<Label>(&line).unwrap(), label);
    let stuck = serde_json::to_string(&Expected::Undetectable).unwrap();
    assert_eq!(stuck, r#""undetectable""#);
    let dlq = serde_json::to_string(&Expected::DeadLetter(Malformation::Binary)).unwrap();
    assert_eq!(dlq, r#"{"dead_letter":"binary"}"#);
}
