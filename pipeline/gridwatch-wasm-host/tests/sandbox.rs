//! Hostile and broken modules get an error that names them and says what
//! happened, never take the host down, and leave it able to build and run a
//! new chain. The modules are tiny WAT texts exporting just the ABI.

mod common;

use std::time::{Duration, Instant};

use common::gridwatch_chain;
use gridwatch_tests::golden;
use gridwatch_tests::inputs::{NOW, framed_avro, mixed_inputs as encode_inputs};
use gridwatch_wasm_host::{
    Batch, Chain, ChainBuilder, Engine, HostError, ModuleSpec, TransformKind,
};

/// The ABI around a `map` body: memory, a bump allocator that rewinds when
/// everything allocated has been freed (so memory stays flat only if the
/// host frees what the guest hands over), `dealloc`, and `copy_records`.
fn abi_module(map_body: &str, extra: &str) -> String {
    format!(
        r#"(module
  (import "env" "copy_records" (func $copy_records (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $live (mut i32) (i32.const 0))
  (func $alloc (export "alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (local.get $have)) (i32.const 16)) (i32.const 1)))
              (i32.const -1))
          (then unreachable))))
    (global.set $heap (local.get $end))
    (global.set $live (i32.add (global.get $live) (i32.const 1)))
    (local.get $ptr))
  (func $dealloc (export "dealloc") (param $ptr i32) (param $len i32)
    (global.set $live (i32.sub (global.get $live) (i32.const 1)))
    (if (i32.eqz (global.get $live)) (then (global.set $heap (i32.const 1024)))))
  (func $be32 (param $p i32) (result i32)
    (i32.or
      (i32.or (i32.shl (i32.load8_u (local.get $p)) (i32.const 24))
              (i32.shl (i32.load8_u offset=1 (local.get $p)) (i32.const 16)))
      (i32.or (i32.shl (i32.load8_u offset=2 (local.get $p)) (i32.const 8))
              (i32.load8_u offset=3 (local.get $p)))))
  (func (export "map") (param $ptr i32) (param $len i32) (param $version i32) (result i32)
    (local $n i32) (local $out i32)
    {map_body})
  {extra})"#
    )
}

/// Hands the input records back unchanged: the records sit at offset 12 of
/// the input (after the base offset and their length), and an output is the
/// records followed by a "no error" byte. Frees its input, as Rust guests do.
const PASSTHROUGH: &str = r#"
    (local.set $n (call $be32 (i32.add (local.get $ptr) (i32.const 8))))
    (local.set $out (call $alloc (i32.add (local.get $n) (i32.const 1))))
    (memory.copy (local.get $out) (i32.add (local.get $ptr) (i32.const 12)) (local.get $n))
    (i32.store8 (i32.add (local.get $out) (local.get $n)) (i32.const 0))
    (call $dealloc (local.get $ptr) (local.get $len))
    (call $copy_records (local.get $out) (i32.add (local.get $n) (i32.const 1)))
    (call $be32 (local.get $out))"#;

const SPIN: &str = "(loop $forever (br $forever)) (i32.const 0)";
const HOG: &str = r#"
    (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable"#;
const PANIC: &str = "unreachable";
const WILD_POINTER: &str =
    "(call $copy_records (i32.const 0x7fff0000) (i32.const 100)) (i32.const 1)";
const SILENT: &str = "(i32.const 0)";
const BAD_STATUS: &str = "(i32.const -11)";

fn engine() -> &'static Engine {
    common::engine()
}

fn wat_chain(map_body: &str, extra: &str) -> ChainBuilder {
    engine().chain().module(ModuleSpec::wasm(
        "hostile",
        abi_module(map_body, extra).into_bytes(),
    ))
}

fn small_batch() -> Batch {
    let mut batch = Batch::new();
    for i in 0..10 {
        batch.push(format!("record {i}").as_bytes());
    }
    batch
}

/// After a fault, a fresh chain of the real modules still works.
fn host_still_works() {
    let readings = golden::readings();
    let mut chain = gridwatch_chain(&[]).build().expect("a new chain builds");
    let mut batch = Batch::new();
    for bytes in encode_inputs(&readings[..500]) {
        batch.push(&bytes);
    }
    let out = chain.process_batch(&batch, 0, NOW).expect("and processes");
    assert_eq!(out.len(), 500);
}

fn expect_fault(chain: &mut Chain) -> HostError {
    let err = chain
        .process_batch(&small_batch(), 0, NOW)
        .expect_err("the module must fail");
    assert_eq!(err.module(), Some("hostile"), "{err}");
    // The chain refuses further work until rebuilt.
    if err.poisons_chain() {
        let again = chain
            .process_batch(&small_batch(), 0, NOW)
            .expect_err("poisoned");
        assert!(matches!(again, HostError::Poisoned { ref module } if module == "hostile"));
        assert_eq!(chain.poisoned_by(), Some("hostile"));
    }
    err
}

#[test]
fn the_wat_passthrough_round_trips_and_its_memory_stays_flat() {
    let mut chain = wat_chain(PASSTHROUGH, "").build().expect("chain");
    assert_eq!(
        chain.modules().next().map(|m| m.kind),
        Some(TransformKind::Map)
    );
    let mut batch = Batch::new();
    for i in 0..1000 {
        batch.push_record(Some(b"k"), format!("value {i}").as_bytes(), i, -i);
    }
    let out = chain.process_batch(&batch, 7, NOW).expect("runs");
    assert_eq!(out.encoded(), batch.encoded());
    assert_eq!(out.len(), 1000);
    let first = chain.memory_size();
    for n in 0..2000 {
        chain.process_batch(&batch, n * 1000, NOW).expect("runs");
    }
    // The allocator only rewinds when every buffer came back, so any leaked
    // output buffer would grow memory by ~15 KB per batch.
    assert_eq!(chain.memory_size(), first);

    // smartengine runs the same module to the same records, so the WAT
    // speaks the real ABI (there it leaks every output buffer).
    let smartengine = fluvio_smartengine::SmartEngine::new();
    let mut builder = fluvio_smartengine::SmartModuleChainBuilder::default();
    builder.add_smart_module(
        fluvio_smartengine::SmartModuleConfig::builder()
            .smartmodule_names(vec!["hostile".to_string()])
            .build()
            .expect("config"),
        abi_module(PASSTHROUGH, "").into_bytes(),
    );
    let mut theirs = builder.initialize(&smartengine).expect("smartengine chain");
    let records: Vec<gridwatch_wasm_host::Record> = out.to_records().expect("records");
    let input = fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput::try_from_records(
        records,
        gridwatch_wasm_host::ABI_VERSION,
    )
    .expect("input");
    let output = theirs.process(input).expect("smartengine runs");
    let theirs_batch = Batch::from_records(&output.successes).expect("batch");
    assert_eq!(theirs_batch.encoded(), batch.encoded());
}

#[test]
fn an_endless_loop_is_stopped_by_the_deadline() {
    let timeout = Duration::from_millis(200);
    let mut chain = wat_chain(SPIN, "")
        .call_timeout(timeout)
        .build()
        .expect("chain");
    let start = Instant::now();
    let err = expect_fault(&mut chain);
    let took = start.elapsed();
    assert!(
        matches!(err, HostError::Deadline { call: "map", timeout: t, .. } if t == timeout),
        "{err}"
    );
    assert!(err.is_retryable() && err.poisons_chain());
    assert!(
        took >= timeout && took < timeout * 5,
        "stopped after {took:?}"
    );
    host_still_works();
}

#[test]
fn an_endless_init_fails_the_build_at_the_deadline() {
    let extra = r#"(func (export "init") (param i32 i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))"#;
    let err = wat_chain(PASSTHROUGH, extra)
        .call_timeout(Duration::from_millis(100))
        .build()
        .expect_err("init never returns");
    assert!(
        matches!(err, HostError::Deadline { call: "init", .. }),
        "{err}"
    );
    host_still_works();
}

#[test]
fn growing_past_the_memory_limit_is_an_error() {
    let limit = 64 * 1024 * 1024;
    let mut chain = wat_chain(HOG, "")
        .memory_limit(limit)
        .build()
        .expect("chain");
    let err = expect_fault(&mut chain);
    match &err {
        HostError::MemoryLimit {
            call,
            limit: l,
            desired,
            ..
        } => {
            assert_eq!((*call, *l), ("map", limit));
            assert!(*desired > limit);
        }
        other => panic!("expected a memory-limit error, got {other}"),
    }
    assert!(chain.memory_size() <= limit);
    host_still_works();

    // A module whose initial memory alone is over the limit does not start.
    let big = r#"(module (memory (export "memory") 2000))"#;
    let err = engine()
        .chain()
        .memory_limit(limit)
        .module(ModuleSpec::wasm("hostile", big.as_bytes()))
        .build()
        .expect_err("over the limit");
    assert!(
        matches!(
            err,
            HostError::MemoryLimit {
                call: "instantiate",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_limit_is_for_the_whole_chain() {
    // Two modules of 40 MiB each fit one by one, not together in 64 MiB.
    let module = abi_module(PASSTHROUGH, "").replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 640)"#,
    );
    let builder = |n: usize| {
        let mut b = engine().chain().memory_limit(64 * 1024 * 1024);
        for _ in 0..n {
            b.add_module(ModuleSpec::wasm("hostile", module.as_bytes()));
        }
        b
    };
    builder(1).build().expect("one fits");
    let err = builder(2).build().expect_err("two do not");
    assert!(matches!(err, HostError::MemoryLimit { .. }), "{err}");
}

#[test]
fn a_trap_is_an_error() {
    let mut chain = wat_chain(PANIC, "").build().expect("chain");
    let err = expect_fault(&mut chain);
    assert!(
        matches!(
            err,
            HostError::Trap {
                call: "map",
                trap: Some(wasmtime::Trap::UnreachableCodeReached),
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());

    // An output reused for a failed batch is left empty, not half-written.
    let mut out = engine()
        .chain()
        .build()
        .expect("empty chain")
        .process_batch(&small_batch(), 0, NOW)
        .expect("an empty chain passes records through");
    assert_eq!(out.encoded(), small_batch().encoded());
    let mut chain = wat_chain(PANIC, "").build().expect("chain");
    chain
        .process_batch_into(&small_batch(), 0, NOW, &mut out)
        .expect_err("traps");
    assert!(out.is_empty());
    assert!(out.to_records().expect("valid encoding").is_empty());
    host_still_works();
}

#[test]
fn broken_outputs_are_errors() {
    let mut chain = wat_chain(WILD_POINTER, "").build().expect("chain");
    let err = expect_fault(&mut chain);
    assert!(
        matches!(&err, HostError::BadOutput { reason, .. } if reason.contains("outside")),
        "{err}"
    );

    let mut chain = wat_chain(SILENT, "").build().expect("chain");
    let err = expect_fault(&mut chain);
    assert!(
        matches!(&err, HostError::BadOutput { reason, .. } if reason.contains("copy_records")),
        "{err}"
    );

    // A status is the module's answer, not a fault: the chain stays usable.
    let mut chain = wat_chain(BAD_STATUS, "").build().expect("chain");
    let err = expect_fault(&mut chain);
    assert!(
        matches!(&err, HostError::GuestStatus { code: -11, status, .. } if status.contains("decode")),
        "{err}"
    );
    assert!(!err.poisons_chain());
    assert!(chain.poisoned_by().is_none());
    host_still_works();
}

#[test]
fn modules_without_the_abi_are_refused_with_the_reason() {
    let cases = [
        ("(module)", "memory"),
        (r#"(module (memory (export "memory") 1))"#, "alloc"),
        (
            r#"(module (memory (export "memory") 1) (func (export "alloc") (param i32) (result i32) (i32.const 0)))"#,
            "no transform",
        ),
        (
            r#"(module (memory (export "memory") 1) (func (export "alloc") (param i64) (result i32) (i32.const 0)))"#,
            "wrong signature",
        ),
        (
            r#"(module (import "env" "socket" (func)) (memory (export "memory") 1))"#,
            "cannot be instantiated",
        ),
        ("not wasm at all", "not a valid WebAssembly module"),
    ];
    for (text, expected) in cases {
        let err = engine()
            .chain()
            .module(ModuleSpec::wasm("broken", text.as_bytes()))
            .build()
            .expect_err(text);
        assert_eq!(err.module(), Some("broken"));
        assert!(
            err.to_string().contains(expected),
            "{err} should say {expected}"
        );
    }

    let foreign = wasmtime::Module::new(&wasmtime::Engine::default(), "(module)").expect("module");
    let err = engine()
        .chain()
        .module(ModuleSpec::compiled("foreign", foreign))
        .build()
        .expect_err("foreign");
    assert!(matches!(err, HostError::ForeignModule { .. }), "{err}");
}

#[test]
fn rebuilding_a_chain_reuses_the_compiled_modules() {
    let engine = Engine::new().expect("engine");
    let builder = engine.chain().module(
        ModuleSpec::wasm("validate", common::validate_wasm())
            .param("schemas", gridwatch_tests::inputs::schemas_param()),
    );
    let started = Instant::now();
    let mut chain = builder.build().expect("chain");
    let first = started.elapsed();
    let reading = golden::readings().remove(0);
    let mut batch = Batch::new();
    batch.push(&framed_avro(&reading));
    chain.process_batch(&batch, 0, NOW).expect("runs");
    let started = Instant::now();
    for _ in 0..5 {
        builder.build().expect("rebuilt");
    }
    let rebuild = started.elapsed() / 5;
    let stats = engine.cache_stats();
    assert_eq!((stats.compiled, stats.hits), (1, 5));
    assert!(
        rebuild < first,
        "rebuild {rebuild:?} vs first build {first:?}"
    );

    // A precompiled module from this engine is taken as it is.
    let module = engine
        .compile("validate", common::validate_wasm())
        .expect("cached");
    engine
        .chain()
        .module(
            ModuleSpec::compiled("validate", module)
                .param("schemas", gridwatch_tests::inputs::schemas_param()),
        )
        .build()
        .expect("precompiled chain");
}

/// A module whose `map` hands over `output` as it is, whatever the input.
fn canned_module(output: &[u8], count: i32) -> String {
    let data: String = output.iter().map(|b| format!("\\{b:02x}")).collect();
    abi_module(
        &format!(
            "(call $copy_records (i32.const 60000) (i32.const {len})) (i32.const {count})",
            len = output.len()
        ),
        &format!(r#"(data (i32.const 60000) "{data}")"#),
    )
}

fn smartengine_run(
    modules: &[String],
    records: Vec<gridwatch_wasm_host::Record>,
) -> fluvio_smartmodule::dataplane::smartmodule::SmartModuleOutput {
    let engine = fluvio_smartengine::SmartEngine::new();
    let mut builder = fluvio_smartengine::SmartModuleChainBuilder::default();
    for (i, text) in modules.iter().enumerate() {
        builder.add_smart_module(
            fluvio_smartengine::SmartModuleConfig::builder()
                .smartmodule_names(vec![format!("m{i}")])
                .build()
                .expect("config"),
            text.clone().into_bytes(),
        );
    }
    let mut chain = builder.initialize(&engine).expect("smartengine chain");
    let mut input = fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput::try_from_records(
        records,
        gridwatch_wasm_host::ABI_VERSION,
    )
    .expect("input");
    input.set_base_offset(100);
    input.set_base_timestamp(NOW);
    chain.process(input).expect("smartengine runs")
}

#[test]
fn record_errors_and_odd_encodings_end_as_in_smartengine() {
    use fluvio_smartmodule::dataplane::core::Encoder;
    use fluvio_smartmodule::dataplane::smartmodule::{
        SmartModuleKind, SmartModuleOutput, SmartModuleTransformRuntimeError,
    };
    use gridwatch_wasm_host::Record;

    let successes = vec![Record::new("first"), Record::new_key_value("k", "second")];
    let error = SmartModuleTransformRuntimeError {
        hint: "third record is bad".into(),
        offset: 102,
        kind: SmartModuleKind::Map,
        record_key: None,
        record_value: "third".into(),
    };
    let mut with_error = Vec::new();
    SmartModuleOutput::with_error(successes.clone(), Some(error.clone()))
        .encode(&mut with_error, gridwatch_wasm_host::ABI_VERSION)
        .expect("encode");
    // The same records, but the first one's length written as a padded
    // varint: valid for fluvio's decoder, not what its encoder writes.
    let mut padded = Vec::new();
    SmartModuleOutput::new(successes.clone())
        .encode(&mut padded, gridwatch_wasm_host::ABI_VERSION)
        .expect("encode");
    padded[4] |= 0x80;
    padded.insert(5, 0);

    let input = vec![Record::new("x"), Record::new("y"), Record::new("z")];
    for (first, count) in [(&with_error, 2), (&padded, 2)] {
        let modules = [canned_module(first, count), abi_module(PASSTHROUGH, "")];
        let theirs = smartengine_run(&modules, input.clone());

        let mut builder = engine().chain();
        for (i, text) in modules.iter().enumerate() {
            builder.add_module(ModuleSpec::wasm(format!("m{i}"), text.as_bytes()));
        }
        let mut chain = builder.build().expect("chain");
        let ours = chain.process(&input, 100, NOW).expect("runs");
        assert_eq!(
            ours.error().map(|(m, e)| (m.to_string(), e.clone())),
            theirs.error.clone().map(|e| ("m0".to_string(), e))
        );
        let theirs_batch = Batch::from_records(&theirs.successes).expect("batch");
        assert_eq!(ours.encoded(), theirs_batch.encoded());
        assert_eq!(ours.len(), 2);
        let values: Vec<&[u8]> = ours.iter().map(|r| r.value).collect();
        assert_eq!(values, [b"first".as_slice(), b"second"]);
    }
}

// --- Issue 9, item 5: the limits hold for the other ways a guest can hog --

#[test]
fn unbounded_recursion_is_a_stack_overflow_trap() {
    let extra = r#"(func $deeper (param i32) (result i32)
        (i32.add (call $deeper (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))"#;
    let mut chain = wat_chain("(call $deeper (i32.const 0))", extra)
        .build()
        .expect("chain");
    let err = expect_fault(&mut chain);
    assert!(
        matches!(
            err,
            HostError::Trap {
                call: "map",
                trap: Some(wasmtime::Trap::StackOverflow),
                ..
            }
        ),
        "{err}"
    );
    host_still_works();
}

#[test]
fn growing_a_table_past_the_memory_limit_is_refused() {
    // Table elements live in host memory, not in the guest's linear memory:
    // 50M funcref slots are ~400 MB of host heap. The store's budget must
    // cover them, or a guest could exhaust the host through a table.
    let limit = 64 * 1024 * 1024;
    let grow = format!(
        r#"(if (i32.eq (table.grow $t (ref.null func) (i32.const 50000000)) (i32.const -1))
              (then unreachable))
           {PASSTHROUGH}"#
    );
    let mut chain = wat_chain(&grow, "(table $t 1 funcref)")
        .memory_limit(limit)
        .build()
        .expect("chain");
    let err = chain
        .process_batch(&small_batch(), 0, NOW)
        .expect_err("the growth must be refused");
    assert_eq!(err.module(), Some("hostile"), "{err}");
    assert!(
        matches!(err, HostError::MemoryLimit { .. } | HostError::Trap { .. }),
        "{err}"
    );
    host_still_works();

    // A table declared over the budget does not instantiate either.
    let big = r#"(module (memory (export "memory") 1) (table 50000000 funcref))"#;
    let err = engine()
        .chain()
        .memory_limit(limit)
        .module(ModuleSpec::wasm("hostile", big.as_bytes()))
        .build()
        .expect_err("over the limit");
    assert_eq!(err.module(), Some("hostile"), "{err}");
}

/// A reading whose meter_id is `len` bytes, as a producer would frame it.
fn reading_with_meter_id(len: usize) -> Vec<u8> {
    let mut reading = golden::readings().remove(0);
    reading.meter_id = "m".repeat(len);
    framed_avro(&reading)
}

#[test]
fn a_record_larger_than_the_memory_limit_fails_the_batch_not_the_host() {
    // The real Rust modules: the input copy alone is over the limit, so the
    // guest allocator fails (and the module aborts, a trap) or the growth is
    // denied; either way the host reports it and carries on.
    let limit = 32 * 1024 * 1024;
    let mut chain = gridwatch_chain(&[])
        .memory_limit(limit)
        .build()
        .expect("chain");
    let mut batch = Batch::new();
    batch.push(&reading_with_meter_id(40 * 1024 * 1024));
    let err = chain
        .process_batch(&batch, 0, NOW)
        .expect_err("40 MB does not fit in 32 MiB");
    assert_eq!(err.module(), Some("validate"), "{err}");
    assert!(
        matches!(err, HostError::MemoryLimit { .. } | HostError::Trap { .. }),
        "{err}"
    );
    assert!(chain.memory_size() <= limit);
    host_still_works();
}

#[test]
fn the_largest_record_the_ingest_api_accepts_passes_the_chain_as_a_dead_letter() {
    // http.max_body_bytes defaults to 16 MiB, so one reading can carry a
    // ~16 MB meter_id. Under the default memory limit it must come out of
    // validate → detect as a dead letter, not fail the batch: a batch that
    // always fails would stop its partition for good.
    use gridwatch_contracts::codec::AvroRecord;
    // Only the memory limit is under test: a generous deadline keeps a busy
    // machine from failing it; the time taken is printed.
    let mut chain = gridwatch_chain(&[])
        .call_timeout(Duration::from_secs(120))
        .build()
        .expect("chain");
    let mut batch = Batch::new();
    batch.push(&reading_with_meter_id(16 * 1024 * 1024));
    for bytes in encode_inputs(&golden::readings()[..20]) {
        batch.push(&bytes);
    }
    let started = Instant::now();
    let out = chain
        .process_batch(&batch, 0, NOW)
        .expect("the chain copes");
    println!(
        "a 16 MiB meter_id through validate → detect took {:?} (the default call timeout is 1 s)",
        started.elapsed()
    );
    assert_eq!(out.len(), 21);
    let first = out.iter().next().expect("one record");
    match gridwatch_contracts::ChainRecord::from_avro(first.value).expect("a chain record") {
        gridwatch_contracts::ChainRecord::DeadLetter(d) => {
            assert_eq!(d.reason, "INVALID_METER_ID", "{}", d.message);
            assert!(d.original.len() > 16 * 1024 * 1024);
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
}
