//! criterion benchmarks of Gridwatch's hot paths, each next to its baseline
//! in the same run. `scripts/bench` runs all of them with short measurement
//! times, then the end-to-end bench and the peer baseline, and prints one
//! table of ratios.
//!
//! Here (`cargo bench -p gridwatch-benches`):
//! - `chain`: validate → detect through `fluvio-smartengine`, through
//!   Gridwatch's wasmtime host (`WasmChain`), and natively, at batch sizes
//!   100, 1,000 and 10,000;
//! - `codec`: Avro encode and decode of `SensorReading` and `ScoredReading`,
//!   next to JSON.
//!
//! Next to the code they measure:
//! - embedded log append and read: `cargo bench -p gridwatch-log`;
//! - Parquet encode (and the lake sink): `cargo bench -p gridwatch-lake --bench encode`;
//! - InfluxDB line-protocol encode: `cargo bench -p gridwatch-influxdb --bench encode`;
//! - the host's own validate → detect bench: `cargo bench -p gridwatch-wasm-host`.
//!
//! The end-to-end figures (`gridwatch bench`, `gridwatch soak`) come from
//! the `gridwatch-bench` crate; the peer baseline is `benches/peer/`.
