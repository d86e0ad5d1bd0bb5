//! What the fuzz targets share. The bodies live in [`targets`] (the file
//! `src/targets.rs`), plain functions over bytes that the stable, bounded
//! CI run (`tests/tests/fuzz.rs`) compiles too; each `fuzz_targets/*.rs`
//! only hands libFuzzer's input to one of them.
//!
//! A target fails when the code under test panics (libFuzzer reports it as a
//! crash) or when one of the properties its body checks does not hold.

mod targets;

pub use targets::*;
