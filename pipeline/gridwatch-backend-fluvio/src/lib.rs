//! Gridwatch on a Fluvio cluster.
//!
//! When one machine is not enough, the pipeline moves from the embedded log
//! to a Fluvio cluster with a config change: `backend: fluvio` and a
//! `fluvio:` section ([`FluvioConfig`]). This crate is everything that
//! change needs:
//!
//! - [`config`]: the `fluvio:` section (profile or endpoint, TLS, partitions,
//!   replication, producer batching, instance i of N);
//! - [`backend`]: [`FluvioBackend`], the runtime's `TopicBackend` on the
//!   real `fluvio` client: topics created when missing, a batching producer
//!   whose `append` returns the offsets the SPU acknowledged, reads from the
//!   explicit offsets the runtime's checkpoints hold;
//! - [`offsets`]: log start and high watermark straight from the leader SPU;
//! - [`server_side`]: the validate → detect chain as a consumer SmartModule
//!   chain inside the SPU ([`ServerChainStream`]), reopened before the SPU's
//!   engine runs out of memory;
//! - [`modules`]: registering the modules with the cluster
//!   ([`register_smartmodule`]), as `fluvio smartmodule create` does;
//! - [`error`]: failures, each retryable or not.
//!
//! # Scale-out
//!
//! Fluvio has no consumer groups. N `gridwatch run` instances split each
//! topic's partitions: instance i owns partition p when p % N == i
//! ([`FluvioConfig::owned_partitions`]), from `fluvio.instance` or the
//! StatefulSet ordinal in `HOSTNAME`. Readings are keyed and partitioned by
//! `meter_id`, so a meter's window lives on exactly one instance, and the
//! runtime's one-writer-per-partition rule holds across instances because
//! output partition p belongs to whoever owns input partition p.
//!
//! # Server-side or client-side chain
//!
//! With this backend the chain can run in two places (`fluvio.chain.mode`):
//!
//! | | server-side (default) | client-side |
//! |---|---|---|
//! | where the CPU goes | the SPUs: WASM runs next to the log, in the cluster's capacity | the `gridwatch` pods, on Gridwatch's own WASM host |
//! | what crosses the network | the chain's outputs (one scored record per reading) | the raw readings |
//! | latency | one hop less: a reading is scored as the SPU hands it out; `look_back` warming adds start-up time to every (re)open | the consumer stream plus an in-process call; nothing to warm on reopen |
//! | state after a restart | rebuilt by the SPU through `look_back`, which the SPU takes from the end of the log (see [`server_side`]) | rebuilt by the runtime replaying from its checkpoint's `warm_from`, exact at any offset |
//! | engine | `fluvio-smartengine` in the SPU, which leaks the output buffers: the stream is reopened every `reopen_after` records | Gridwatch's host: flat memory, memory and time limits per module |
//! | modules | registered in the cluster (`gridwatch modules publish`); deploys are cluster-wide | `.wasm` files on the pod; deploys are per pod |
//!
//! Both produce the same outputs for the same input, which the tests check
//! against a real cluster. Anomaly ids do not depend on the partition (a
//! module in the SPU cannot see it): they hash meter, timestamp, source
//! offset and type, and (meter, offset) already names one position because
//! readings are partitioned by meter.
//!
//! # The SPU's engine leaks
//!
//! `fluvio-smartengine` never frees the buffers a module returns its output
//! in, so a long-lived chain instance grows about 170 bytes a record until it
//! traps at the store's memory limit (1 GB by default, ~5.5M records). Only
//! a new stream gets a new instance, so [`ServerChainStream`] counts
//! records and reopens at the next offset with the same `look_back`, which
//! re-warms the windows, well before the limit (`fluvio.chain.reopen_after`,
//! 2M by default, the budget the runtime's own `SmartEngineChain` uses).

pub mod append_clock;
pub mod backend;
pub mod config;
pub mod error;
pub mod modules;
pub mod offsets;
pub mod server_backend;
pub mod server_side;

pub use backend::FluvioBackend;
pub use config::{ChainMode, FluvioConfig, TlsOptions};
pub use error::FluvioBackendError;
pub use modules::{ModuleSource, RegisteredModule, register_smartmodule};
pub use offsets::PartitionOffsets;
pub use server_backend::ServerChainBackend;
pub use server_side::{
    LookbackSpec, NamedModule, ServerChainSpec, ServerChainStream, open_server_chain,
};
