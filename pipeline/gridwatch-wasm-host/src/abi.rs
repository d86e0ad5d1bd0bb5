//! Fluvio's SmartModule ABI, host side, for one instantiated module.
//!
//! The ABI, as `fluvio-smartmodule-derive` 0.50 generates it and
//! `fluvio-smartengine` 0.50 drives it:
//!
//! - the guest exports `memory`, `alloc(len) -> ptr` and `dealloc(ptr, len)`;
//! - the host encodes a `SmartModuleInput` (or `SmartModuleInitInput`) with
//!   `fluvio-protocol` at version 22, copies it into a buffer from `alloc`,
//!   and calls `init` / `filter` / `map` / `filter_map` / `array_map` /
//!   `look_back` with `(ptr, len, version)`. The guest takes ownership of
//!   that buffer and frees it;
//! - the guest encodes its output into a buffer of its own, calls the
//!   imported `copy_records(ptr, len)` and returns a record count, or a
//!   negative status;
//! - nobody frees that output buffer in smartengine: it is leaked on every
//!   call. Here the host copies it out and then calls the guest's
//!   `dealloc(ptr, len)`, which rebuilds the `Vec<u8>` and drops it. The
//!   length passed is the length handed over, which can be below the
//!   buffer's capacity; the guest's allocator (wasi-libc's `free` on
//!   `wasm32-wasip1`) ignores the size, and the ABI gives no way to learn
//!   the capacity.

use std::collections::BTreeMap;
use std::io::Cursor;

use fluvio_smartmodule::SMARTMODULE_TIMESTAMPS_VERSION;
use fluvio_smartmodule::dataplane::core::{Decoder, Encoder, Version};
use fluvio_smartmodule::dataplane::smartmodule::{
    Lookback, SmartModuleExtraParams, SmartModuleInitErrorStatus, SmartModuleInitInput,
    SmartModuleInitOutput, SmartModuleInput, SmartModuleLookbackErrorStatus,
    SmartModuleLookbackOutput, SmartModuleOutput, SmartModuleTransformErrorStatus,
    SmartModuleTransformRuntimeError,
};
use wasmtime::{
    Caller, Instance, Linker, Memory, Module, Store, Trap, TypedFunc, WasmParams, WasmResults,
};

use crate::chain::WASM_PAGE;
use crate::error::HostError;
use crate::limits::GuestLimiter;
use crate::records::{Malformed, scan_output};

/// The protocol version the host speaks, smartengine's default.
pub(crate) const ABI_VERSION: Version = SMARTMODULE_TIMESTAMPS_VERSION;

const MEMORY: &str = "memory";
const ALLOC: &str = "alloc";
const DEALLOC: &str = "dealloc";
const INIT: &str = "init";
const LOOK_BACK: &str = "look_back";
/// Optional, Gridwatch's own: `fn() -> i64`, meters whose state a module holds.
const STATE_METERS: &str = "gridwatch_state_meters";
pub(crate) const COPY_RECORDS: &str = "copy_records";
const AGGREGATE: &str = "aggregate";

/// Where the records' bytes sit in an encoded `SmartModuleInput`: after the
/// `i64` base offset (a unit test checks the splice against fluvio's encoder).
const RAW_BYTES_AT: usize = 8;

/// `init`, the transforms and `look_back`: `(ptr, len, version) -> status`.
type AbiFn = TypedFunc<(i32, i32, u32), i32>;

/// The kind of transform a module exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransformKind {
    Filter,
    Map,
    FilterMap,
    ArrayMap,
}

impl TransformKind {
    /// The order smartengine looks for them in, so a module exporting
    /// several runs the same function in both hosts.
    const SEARCH_ORDER: [Self; 4] = [Self::Filter, Self::Map, Self::FilterMap, Self::ArrayMap];

    /// The export's name.
    pub fn export(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Map => "map",
            Self::FilterMap => "filter_map",
            Self::ArrayMap => "array_map",
        }
    }
}

/// What the store carries for its guests.
pub(crate) struct HostState {
    pub wasi: wasi_common::WasiCtx,
    pub limiter: GuestLimiter,
    /// The last `copy_records(ptr, len)` of the running call.
    pub handoff: Option<(u32, u32)>,
    /// The call budget, for the error message when it runs out.
    pub timeout: std::time::Duration,
}

/// Defines `copy_records` wherever `module` imports it from. The guest only
/// says where its output is; the host reads it once the call has returned.
pub(crate) fn link_copy_records(
    linker: &mut Linker<HostState>,
    module: &Module,
    name: &str,
) -> Result<(), HostError> {
    for import in module.imports().filter(|i| i.name() == COPY_RECORDS) {
        linker
            .func_wrap(
                import.module(),
                COPY_RECORDS,
                |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| {
                    caller.data_mut().handoff = Some((ptr as u32, len as u32));
                },
            )
            .map_err(|e| HostError::Instantiate {
                module: name.to_string(),
                reason: format!("{e:#}"),
            })?;
    }
    Ok(())
}

/// A `SmartModuleInput` encoded without its records, to splice a batch's
/// bytes into: everything but the records is the same for every module of
/// one batch, so it is encoded once per batch, not per module.
#[derive(Debug, Default)]
pub(crate) struct InputFrame {
    bytes: Vec<u8>,
}

impl InputFrame {
    pub fn set(&mut self, base_offset: i64, base_timestamp: i64) -> Result<(), HostError> {
        self.bytes.clear();
        SmartModuleInput::new(Vec::new(), base_offset, base_timestamp)
            .encode(&mut self.bytes, ABI_VERSION)
            .map_err(|source| HostError::Codec {
                what: "a SmartModule input",
                source,
            })
    }

    /// The encoding split around the records: head, length of the records,
    /// the records, tail.
    fn parts<'a>(&'a self, raw: &'a [u8], len: &'a [u8; 4]) -> [&'a [u8]; 4] {
        let head = self.bytes.get(..RAW_BYTES_AT).unwrap_or_default();
        let tail = self.bytes.get(RAW_BYTES_AT + 4..).unwrap_or_default();
        [head, len, raw, tail]
    }
}

/// What one transform call produced.
#[derive(Debug)]
pub(crate) struct Step {
    pub count: usize,
    pub error: Option<SmartModuleTransformRuntimeError>,
}

/// One instantiated SmartModule and its ABI exports.
pub(crate) struct Guest {
    pub name: String,
    pub kind: TransformKind,
    pub lookback: Option<Lookback>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    dealloc: Option<TypedFunc<(i32, i32), ()>>,
    init: Option<AbiFn>,
    transform: AbiFn,
    look_back: Option<AbiFn>,
    /// Gridwatch's own optional export: meters whose state the module holds.
    state_meters: Option<TypedFunc<(), i64>>,
}

impl Guest {
    pub fn instantiate(
        store: &mut Store<HostState>,
        linker: &Linker<HostState>,
        module: &Module,
        name: &str,
        lookback: Option<Lookback>,
    ) -> Result<Self, HostError> {
        let instance = linker.instantiate(&mut *store, module).map_err(|e| {
            if store.data().limiter.denied.is_some() || e.downcast_ref::<Trap>().is_some() {
                fault(store, name, "instantiate", e)
            } else {
                HostError::Instantiate {
                    module: name.to_string(),
                    reason: format!("{e:#}"),
                }
            }
        })?;
        let memory =
            instance
                .get_memory(&mut *store, MEMORY)
                .ok_or_else(|| HostError::MissingExport {
                    module: name.to_string(),
                    export: MEMORY,
                    expected: "a linear memory",
                })?;
        let alloc =
            export(store, &instance, name, ALLOC)?.ok_or_else(|| HostError::MissingExport {
                module: name.to_string(),
                export: ALLOC,
                expected: "fn(len: i32) -> i32",
            })?;
        let dealloc = export(store, &instance, name, DEALLOC)?;
        if dealloc.is_none() {
            tracing::warn!(
                module = name,
                "The module exports no dealloc; its output buffers will leak as in fluvio-smartengine."
            );
        }
        let init = export(store, &instance, name, INIT)?;
        let look_back = export(store, &instance, name, LOOK_BACK)?;
        let state_meters = export(store, &instance, name, STATE_METERS)?;
        let mut transform = None;
        for kind in TransformKind::SEARCH_ORDER {
            if let Some(f) = export(store, &instance, name, kind.export())? {
                transform = Some((kind, f));
                break;
            }
        }
        let Some((kind, transform)) = transform else {
            if instance.get_func(&mut *store, AGGREGATE).is_some() {
                return Err(HostError::UnsupportedKind {
                    module: name.to_string(),
                    kind: AGGREGATE,
                });
            }
            return Err(HostError::NoTransform {
                module: name.to_string(),
            });
        };
        Ok(Self {
            name: name.to_string(),
            kind,
            lookback,
            memory,
            alloc,
            dealloc,
            init,
            transform,
            look_back,
            state_meters,
        })
    }

    /// Meters the module holds state for, if it says (`gridwatch_state_meters`).
    pub fn state_meters(&self, store: &mut Store<HostState>) -> Option<Result<u64, HostError>> {
        let f = self.state_meters.as_ref()?;
        Some(
            f.call(&mut *store, ())
                .map(|n| n.max(0) as u64)
                .map_err(|e| fault(store, &self.name, STATE_METERS, e)),
        )
    }

    /// Linear memory of this module, in bytes.
    pub fn memory_size(&self, store: &Store<HostState>) -> usize {
        self.memory.data_size(store)
    }

    pub fn memory_data<'a>(&self, store: &'a Store<HostState>) -> &'a [u8] {
        self.memory.data(store)
    }

    /// Makes this guest's linear memory equal to `image`: grows it if the
    /// image is larger (through the limiter, so the chain's memory limit
    /// still holds), copies the image and zeroes what lies past it.
    pub fn restore_memory(
        &self,
        store: &mut Store<HostState>,
        image: &[u8],
    ) -> Result<(), HostError> {
        let current = self.memory.data_size(&*store);
        if image.len() > current {
            let pages = (image.len() - current).div_ceil(WASM_PAGE) as u64;
            self.memory
                .grow(&mut *store, pages)
                .map_err(|e| HostError::Snapshot {
                    module: self.name.clone(),
                    reason: format!("growing memory to {} bytes: {e:#}", image.len()),
                })?;
        }
        let data = self.memory.data_mut(&mut *store);
        data[..image.len()].copy_from_slice(image);
        data[image.len()..].fill(0);
        Ok(())
    }

    pub fn has_look_back(&self) -> bool {
        self.look_back.is_some()
    }

    /// Calls `init` with the params, if the module has one.
    pub fn init(
        &self,
        store: &mut Store<HostState>,
        params: &BTreeMap<String, String>,
    ) -> Result<(), HostError> {
        let Some(init) = &self.init else {
            return Ok(());
        };
        let mut input = Vec::new();
        SmartModuleInitInput {
            params: SmartModuleExtraParams::from(params.clone()),
        }
        .encode(&mut input, ABI_VERSION)
        .map_err(|source| HostError::Codec {
            what: "the init params",
            source,
        })?;
        let (ptr, len) = self.write_input(store, &[&input], INIT)?;
        let code = self.call(store, init, INIT, ptr, len)?;
        let handoff = self.take_handoff(store, INIT)?;
        let outcome = if code >= 0 {
            Ok(())
        } else if code == SmartModuleInitErrorStatus::InitError as i32 {
            Err(match handoff {
                Some(range) => match decode_at::<SmartModuleInitOutput>(self.bytes(store, range)) {
                    Ok(output) => HostError::Init {
                        module: self.name.clone(),
                        message: output.error.hint,
                    },
                    Err(reason) => self.bad_output(INIT, reason),
                },
                None => self.bad_output(
                    INIT,
                    "reported an init error without handing it over".into(),
                ),
            })
        } else {
            Err(HostError::GuestStatus {
                module: self.name.clone(),
                call: INIT,
                code,
                status: init_status(code),
            })
        };
        self.free(store, handoff, INIT)?;
        outcome
    }

    /// Runs the transform over `raw` (a `Vec<Record>` encoding) and leaves
    /// its output records, in the same encoding, in `dest`.
    pub fn transform(
        &self,
        store: &mut Store<HostState>,
        frame: &InputFrame,
        raw: &[u8],
        dest: &mut Vec<u8>,
    ) -> Result<Step, HostError> {
        let call = self.kind.export();
        let len_bytes = self.raw_len(raw)?;
        let (ptr, len) = self.write_input(store, &frame.parts(raw, &len_bytes), call)?;
        let code = self.call(store, &self.transform, call, ptr, len)?;
        let handoff = self.take_handoff(store, call)?;
        let outcome = if code < 0 {
            Err(HostError::GuestStatus {
                module: self.name.clone(),
                call,
                code,
                status: transform_status(code),
            })
        } else {
            match handoff {
                Some(range) => read_output(self.bytes(store, range), dest)
                    .map_err(|reason| self.bad_output(call, reason)),
                None => Err(self.bad_output(
                    call,
                    "returned without handing over its output through copy_records".into(),
                )),
            }
        };
        self.free(store, handoff, call)?;
        outcome
    }

    /// Feeds history to `look_back`; a module without one ignores it.
    pub fn look_back(
        &self,
        store: &mut Store<HostState>,
        frame: &InputFrame,
        raw: &[u8],
    ) -> Result<(), HostError> {
        let Some(look_back) = &self.look_back else {
            return Ok(());
        };
        let len_bytes = self.raw_len(raw)?;
        let (ptr, len) = self.write_input(store, &frame.parts(raw, &len_bytes), LOOK_BACK)?;
        let code = self.call(store, look_back, LOOK_BACK, ptr, len)?;
        let handoff = self.take_handoff(store, LOOK_BACK)?;
        let outcome = if code >= 0 {
            Ok(())
        } else if code == SmartModuleLookbackErrorStatus::PropagatedError as i32 {
            Err(match handoff {
                Some(range) => {
                    match decode_at::<SmartModuleLookbackOutput>(self.bytes(store, range)) {
                        Ok(output) => HostError::LookBack {
                            module: self.name.clone(),
                            message: format!(
                                "{} (record at offset {})",
                                output.error.hint, output.error.offset
                            ),
                        },
                        Err(reason) => self.bad_output(LOOK_BACK, reason),
                    }
                }
                None => self.bad_output(
                    LOOK_BACK,
                    "reported a look_back error without handing it over".into(),
                ),
            })
        } else {
            Err(HostError::GuestStatus {
                module: self.name.clone(),
                call: LOOK_BACK,
                code,
                status: look_back_status(code),
            })
        };
        self.free(store, handoff, LOOK_BACK)?;
        outcome
    }

    fn raw_len(&self, raw: &[u8]) -> Result<[u8; 4], HostError> {
        u32::try_from(raw.len())
            .map(u32::to_be_bytes)
            .map_err(|_| HostError::InputTooLarge {
                module: self.name.clone(),
                bytes: raw.len(),
            })
    }

    /// Copies the parts, back to back, into a buffer from the guest's `alloc`.
    fn write_input(
        &self,
        store: &mut Store<HostState>,
        parts: &[&[u8]],
        call: &'static str,
    ) -> Result<(i32, i32), HostError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let len = i32::try_from(total).map_err(|_| HostError::InputTooLarge {
            module: self.name.clone(),
            bytes: total,
        })?;
        store.data_mut().handoff = None;
        let ptr = self
            .alloc
            .call(&mut *store, len)
            .map_err(|e| fault(store, &self.name, ALLOC, e))?;
        let memory = self.memory.data_mut(&mut *store);
        let start = ptr as u32 as usize;
        let Some(dest) = start
            .checked_add(total)
            .and_then(|end| memory.get_mut(start..end))
        else {
            let size = memory.len();
            return Err(self.bad_output(
                call,
                format!(
                    "alloc returned {start} for {total} bytes, outside its {size} bytes of memory"
                ),
            ));
        };
        let mut at = 0;
        for part in parts {
            dest[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok((ptr, len))
    }

    fn call(
        &self,
        store: &mut Store<HostState>,
        f: &AbiFn,
        call: &'static str,
        ptr: i32,
        len: i32,
    ) -> Result<i32, HostError> {
        store.data_mut().handoff = None;
        f.call(&mut *store, (ptr, len, ABI_VERSION as u32))
            .map_err(|e| fault(store, &self.name, call, e))
    }

    /// The handed-over output, checked to lie inside the guest's memory.
    fn take_handoff(
        &self,
        store: &mut Store<HostState>,
        call: &'static str,
    ) -> Result<Option<(usize, usize)>, HostError> {
        let Some((ptr, len)) = store.data_mut().handoff.take() else {
            return Ok(None);
        };
        let (start, len) = (ptr as usize, len as usize);
        let size = self.memory.data_size(&*store);
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(self.bad_output(
                call,
                format!("copy_records({start}, {len}) points outside its {size} bytes of memory"),
            ));
        }
        Ok(Some((start, len)))
    }

    fn bytes<'a>(&self, store: &'a Store<HostState>, (start, len): (usize, usize)) -> &'a [u8] {
        // `take_handoff` checked the range.
        self.memory
            .data(store)
            .get(start..start + len)
            .unwrap_or_default()
    }

    /// Gives the output buffer back to the guest: the leak this host fixes.
    fn free(
        &self,
        store: &mut Store<HostState>,
        handoff: Option<(usize, usize)>,
        call: &'static str,
    ) -> Result<(), HostError> {
        let (Some((start, len)), Some(dealloc)) = (handoff, &self.dealloc) else {
            return Ok(());
        };
        // Both fit in i32: the range lies inside a 32-bit memory.
        dealloc
            .call(&mut *store, (start as i32, len as i32))
            .map_err(|e| match fault(store, &self.name, DEALLOC, e) {
                HostError::Trap {
                    module,
                    trap,
                    message,
                    ..
                } => HostError::Trap {
                    module,
                    call,
                    trap,
                    message: format!("in dealloc after {call}: {message}"),
                },
                other => other,
            })
    }

    fn bad_output(&self, call: &'static str, reason: String) -> HostError {
        HostError::BadOutput {
            module: self.name.clone(),
            call,
            reason,
        }
    }
}

/// Copies a transform's output records into `dest`, unchanged when they are
/// canonical, else through the `fluvio-protocol` types (see `records`).
fn read_output(bytes: &[u8], dest: &mut Vec<u8>) -> Result<Step, String> {
    let scanned = scan_output(bytes).map_err(|m: Malformed| m.to_string())?;
    dest.clear();
    if scanned.canonical {
        dest.extend_from_slice(&bytes[..scanned.end]);
        let error = if scanned.has_error {
            decode_at::<Option<SmartModuleTransformRuntimeError>>(&bytes[scanned.end..])?
        } else {
            None
        };
        return Ok(Step {
            count: scanned.count,
            error,
        });
    }
    let output = decode_at::<SmartModuleOutput>(bytes)?;
    output
        .successes
        .encode(dest, ABI_VERSION)
        .map_err(|e| format!("re-encoding its records failed: {e}"))?;
    Ok(Step {
        count: output.successes.len(),
        error: output.error,
    })
}

fn decode_at<T: Decoder + Default>(bytes: &[u8]) -> Result<T, String> {
    T::decode_from(&mut Cursor::new(bytes), ABI_VERSION)
        .map_err(|e| format!("its output does not decode: {e}"))
}

/// Looks up an ABI export; a wrong signature is an error, absence is not.
fn export<P: WasmParams, R: WasmResults>(
    store: &mut Store<HostState>,
    instance: &Instance,
    module: &str,
    name: &'static str,
) -> Result<Option<TypedFunc<P, R>>, HostError> {
    let Some(func) = instance.get_func(&mut *store, name) else {
        return Ok(None);
    };
    func.typed::<P, R>(&*store)
        .map(Some)
        .map_err(|e| HostError::BadExport {
            module: module.to_string(),
            export: name,
            reason: format!("{e:#}"),
        })
}

/// Turns a failed guest call into an error that says what happened.
pub(crate) fn fault(
    store: &mut Store<HostState>,
    module: &str,
    call: &'static str,
    err: wasmtime::Error,
) -> HostError {
    let module = module.to_string();
    if let Some(denial) = store.data_mut().limiter.denied.take() {
        return HostError::MemoryLimit {
            module,
            call,
            current: denial.current,
            desired: denial.desired,
            limit: denial.limit,
        };
    }
    if let Some(trap) = err.downcast_ref::<Trap>().copied() {
        if trap == Trap::Interrupt {
            return HostError::Deadline {
                module,
                call,
                timeout: store.data().timeout,
            };
        }
        return HostError::Trap {
            module,
            call,
            trap: Some(trap),
            message: format!("{err:#}"),
        };
    }
    if let Some(exit) = err.downcast_ref::<wasi_common::I32Exit>() {
        return HostError::Trap {
            module,
            call,
            trap: None,
            message: format!("the module called proc_exit({})", exit.0),
        };
    }
    HostError::Trap {
        module,
        call,
        trap: None,
        message: format!("{err:#}"),
    }
}

fn transform_status(code: i32) -> String {
    SmartModuleTransformErrorStatus::try_from(code)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "unknown status".into())
}

fn init_status(code: i32) -> String {
    SmartModuleInitErrorStatus::try_from(code)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "unknown status".into())
}

fn look_back_status(code: i32) -> String {
    SmartModuleLookbackErrorStatus::try_from(code)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "unknown status".into())
}

#[cfg(test)]
mod tests {
    use fluvio_smartmodule::Record;

    use super::*;
    use crate::records::Batch;

    #[test]
    fn the_spliced_input_is_what_fluvio_encodes() {
        let records: Vec<Record> = (0..50)
            .map(|i| Record::new(format!("record {i}")))
            .collect();
        let batch = Batch::from_records(&records).expect("batch");
        let mut frame = InputFrame::default();
        frame.set(1_234_567, 1_767_300_000_000).expect("frame");
        let len = (batch.encoded().len() as u32).to_be_bytes();
        let spliced: Vec<u8> = frame.parts(batch.encoded(), &len).concat();

        let mut input = SmartModuleInput::try_from_records(records, ABI_VERSION).expect("input");
        input.set_base_offset(1_234_567);
        input.set_base_timestamp(1_767_300_000_000);
        let mut expected = Vec::new();
        input.encode(&mut expected, ABI_VERSION).expect("encode");
        assert_eq!(spliced, expected);
    }
}
