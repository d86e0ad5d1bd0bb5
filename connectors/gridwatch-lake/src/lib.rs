//! The lake archiver (FR-006, user story 3): every processed reading, with
//! the detector's evidence, and every anomaly, as Parquet in a local
//! directory or an S3 bucket, exactly once per source position.
//!
//! - [`config`]: `sinks.lake` ([`LakeConfig`]).
//! - [`layout`]: folders, file names and the commit state.
//! - [`encoder`]: rows, the Arrow schemas and the Parquet writer.
//! - [`reader`]: [`LakeReader`](reader::LakeReader), reading the committed
//!   readings back by date, for `gridwatch replay --from-lake`.
//! - [`sink`]: [`LakeSink`], the [`Sink`](gridwatch_connector::Sink), and
//!   its commit protocol.
//!
//! # Layout
//!
//! ```text
//! <root>/readings/date=YYYY-MM-DD/hour=HH/part-p<partition>-<first:020>-<last:020>.parquet
//! <root>/anomalies/date=YYYY-MM-DD/part-p<partition>-<first:020>-<last:020>.parquet
//! <root>/_lake/state/{readings,anomalies}/p<partition>.json
//! ```
//!
//! `date` and `hour` are the UTC **event time** of the reading (for an
//! anomaly, of the reading that raised it), not the time of archiving, so
//! late data lands where it belongs. Files are cut at checkpoints (each
//! [`Sink::flush`](gridwatch_connector::Sink::flush)), never by wall-clock
//! time; `first` and `last` are the source offsets of the file's first and
//! last rows. Query with Hive partitioning, e.g. DuckDB
//! `read_parquet('lake/readings/*/*/*.parquet', hive_partitioning = true)`
//! or pyarrow `dataset(…, partitioning = "hive")`.
//!
//! # `readings/` columns
//!
//! One row per processed reading (every disposition, anomalous or not).
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `source_topic` | string | the topic the row came from (`scored`) |
//! | `source_partition` | int32 | its partition |
//! | `source_offset` | int64 | its offset: (topic, partition, offset) is the row's identity, unique in the lake |
//! | `appended_at` | timestamp(ms, UTC) | when the record was appended to `source_topic` |
//! | `meter_id` | string | |
//! | `event_time` | timestamp(ms, UTC) | the reading's timestamp; partitions the row |
//! | `voltage`, `current`, `temperature` | double | raw values, V, A, °C |
//! | `status` | string | `OK`, `DEGRADED`, `FAILURE` |
//! | `reading_offset` | int64 | the reading's offset in the `readings` topic |
//! | `disposition` | string | `SCORED`, `EXCLUDED_FAILURE`, `LATE`, `INVALID` |
//! | `anomalous` | bool | any field anomalous or any anomaly raised |
//! | `anomaly_count` | int32 | anomalies raised by this reading |
//! | `anomaly_types` | string, null | their types, comma-separated |
//! | `max_severity` | string, null | the most urgent severity among them |
//! | `<f>_window_count` | int32, null | for `f` in voltage, current, temperature: samples in the window |
//! | `<f>_window_mean`, `<f>_window_stddev` | double, null | the window's statistics |
//! | `<f>_zscore` | double, null | null when the field was not scored |
//! | `<f>_anomalous` | bool, null | the field's verdict; null when the detector sent no score |
//!
//! # `anomalies/` columns
//!
//! `source_topic` (`anomalies`), `source_partition`, `source_offset`,
//! `appended_at` as above; then `anomaly_id`, `anomaly_type`, `severity`,
//! `detected_at` (timestamp), the reading (`meter_id`, `event_time`,
//! `voltage`, `current`, `temperature`, `status`) and the evidence:
//! `field`, `zscore`, `window_mean`, `window_stddev`, `window_count`,
//! `threshold`, `window_ms` (all nullable).
//!
//! Each file's footer also carries `gridwatch.source_topic`,
//! `gridwatch.source_partition`, `gridwatch.first_offset` and
//! `gridwatch.last_offset`.

pub mod config;
pub mod encoder;
mod error;
pub mod layout;
pub mod reader;
pub mod sink;
mod store;

pub use config::{Compression, LakeConfig, Secret, TlsConfig};
pub use error::LakeError;
pub use sink::{LakeSink, LakeStats};
