//! Kernel launches by name on one stream, with arguments as raw device pointers and scalars.
//!
//! Buffers are `cudarc` slices owned by the executor; launches take their device addresses
//! (plus element offsets), so a kernel can read and write views of the same buffer (e.g. in-place
//! conversions) without fighting the borrow checker. Everything runs on the one stream of the
//! device, in order, so cudarc's per-buffer event tracking is switched off.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
    ValidAsZeroBits,
};

use super::device::Device;
use super::launch::Shape;
use crate::engine::EngineError;

/// Every kernel the forward and the weight generator launch: `(file, function)`.
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("weights.cu", "chacha8_words"),
    ("weights.cu", "int4_scales"),
    ("weights.cu", "uniform_f32"),
    ("weights.cu", "uniform_f16"),
    ("norm.cu", "embed"),
    ("norm.cu", "embed_f16"),
    ("norm.cu", "rms_norm"),
    ("norm.cu", "add_inplace"),
    ("norm.cu", "add_bias_rows"),
    ("norm.cu", "round_f16"),
    ("int4_gemm.cu", "int4_gemv"),
    ("int4_gemm.cu", "int4_gemm"),
    ("int4_gemm.cu", "int4_gemm_grouped"),
    ("int4_gemm.cu", "int4_gemv_per_pair"),
    ("int4_gemm.cu", "f32_gemv"),
    ("int4_gemm.cu", "f16_gemv"),
    ("attention.cu", "qk_norm_rope"),
    ("attention.cu", "kv_write"),
    ("attention.cu", "paged_attention"),
    ("moe.cu", "router_topk"),
    ("moe.cu", "moe_count"),
    ("moe.cu", "moe_offsets"),
    ("moe.cu", "moe_scatter"),
    ("moe.cu", "swiglu"),
    ("moe.cu", "moe_combine"),
    ("sample.cu", "argmax_rows"),
];

/// One kernel argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg {
    /// A device address.
    P(u64),
    /// `int`.
    I(i32),
    /// `u64` (`unsigned long long`).
    U(u64),
    /// `float`.
    F(f32),
}

/// The device, its stream and the loaded kernels.
pub struct Gpu {
    /// Context, stream, modules.
    pub dev: Device,
    funcs: HashMap<&'static str, (CudaFunction, Vec<Param>)>,
}

/// A driver error as an engine fault naming what failed.
pub fn fault(what: &str) -> impl Fn(cudarc::driver::DriverError) -> EngineError + '_ {
    move |e| EngineError::Fault(format!("CUDA: {what}: {e}"))
}

impl Gpu {
    /// Opens device `ordinal` and loads every function of [`FUNCTIONS`].
    pub fn open(ordinal: usize) -> Result<Gpu, EngineError> {
        Gpu::open_with_stream(ordinal, false)
    }

    /// [`Gpu::open`] with a stream of its own when `own_stream` (see [`Device::open_with_stream`]).
    pub fn open_with_stream(ordinal: usize, own_stream: bool) -> Result<Gpu, EngineError> {
        let dev = Device::open_with_stream(ordinal, own_stream).map_err(EngineError::Config)?;
        // SAFETY: every launch and copy of this Gpu goes to its one stream, in program order, so
        // cross-stream event tracking is not needed; two layer-split stages on one device each
        // have their own buffers and stream, and hand rows over through the host after a sync.
        unsafe { dev.ctx.disable_event_tracking() };
        let mut funcs = HashMap::new();
        for (file, name) in FUNCTIONS {
            let params = signature(file, name).map_err(EngineError::Fault)?;
            let f = dev.function(file, name).map_err(EngineError::Fault)?;
            funcs.insert(*name, (f, params));
        }
        Ok(Gpu { dev, funcs })
    }

    /// The stream.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.dev.stream
    }

    /// Device address of `s` plus `offset` elements.
    pub fn ptr<T>(&self, s: &CudaSlice<T>, offset: usize) -> u64 {
        let (p, _sync) = s.device_ptr(&self.dev.stream);
        p + (offset * std::mem::size_of::<T>()) as u64
    }

    /// `n` zeroed elements.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        n: usize,
    ) -> Result<CudaSlice<T>, EngineError> {
        self.dev
            .stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| EngineError::Fault(format!("CUDA: cannot allocate {n} elements: {e}")))
    }

    /// Launches kernel `name` with `args` (nothing to do for an empty grid).
    pub fn launch(&self, name: &str, shape: Shape, args: &[Arg]) -> Result<(), EngineError> {
        if shape.grid.0 == 0 || shape.grid.1 == 0 || shape.grid.2 == 0 {
            return Ok(());
        }
        let (f, params) = self
            .funcs
            .get(name)
            .ok_or_else(|| EngineError::Fault(format!("kernel {name} is not loaded")))?;
        check_args(name, params, args).map_err(EngineError::Fault)?;
        let mut b = self.dev.stream.launch_builder(f);
        for a in args {
            match a {
                Arg::P(v) | Arg::U(v) => b.arg(v),
                Arg::I(v) => b.arg(v),
                Arg::F(v) => b.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: shape.grid,
            block_dim: shape.block,
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match the kernel's signature in kernels/*.cu (count and kinds
        // checked just above), and every address points into a live buffer of the size the
        // kernel reads (sizes from `plan::Workspace`).
        unsafe { b.launch(cfg) }
            .map(|_| ())
            .map_err(|e| EngineError::Fault(format!("CUDA: launch of {name} failed: {e}")))
    }

    /// Waits for everything queued on the stream.
    pub fn sync(&self) -> Result<(), EngineError> {
        self.dev.stream.synchronize().map_err(fault("synchronize"))
    }
}

/// The kind of a kernel parameter, from its C declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// A pointer (`float*`, `const int* __restrict__`, ...).
    Ptr,
    /// `int`.
    Int,
    /// `u64`.
    U64,
    /// `float`.
    Float,
}

/// The parameters of kernel `name` in kernel file `file`, parsed from its source, so a launch
/// with the wrong number, order or kind of arguments is a clear error instead of a fault.
pub fn signature(file: &str, name: &str) -> Result<Vec<Param>, String> {
    let source = super::kernels::FILES
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, s)| *s)
        .ok_or_else(|| format!("no kernel file {file}"))?;
    let head = format!("void {name}(");
    let start = source
        .find(&head)
        .ok_or_else(|| format!("{file}: no kernel {name}"))?
        + head.len();
    let end = start
        + source[start..]
            .find(')')
            .ok_or_else(|| format!("{file}: unterminated parameter list of {name}"))?;
    source[start..end]
        .split(',')
        .map(|p| {
            let p = p.trim();
            if p.contains('*') {
                return Ok(Param::Ptr);
            }
            let ty = p.split_whitespace().rev().nth(1).unwrap_or_default();
            match ty {
                "int" => Ok(Param::Int),
                "u64" => Ok(Param::U64),
                "float" => Ok(Param::Float),
                other => Err(format!(
                    "{file}: {name}: unknown parameter type `{other}` in `{p}`"
                )),
            }
        })
        .collect()
}

/// `Ok` when `args` match `params` one for one.
pub fn check_args(name: &str, params: &[Param], args: &[Arg]) -> Result<(), String> {
    if params.len() != args.len() {
        return Err(format!(
            "kernel {name} takes {} arguments, the launch passes {}",
            params.len(),
            args.len()
        ));
    }
    for (i, (p, a)) in params.iter().zip(args).enumerate() {
        let ok = matches!(
            (p, a),
            (Param::Ptr, Arg::P(_))
                | (Param::Int, Arg::I(_))
                | (Param::U64, Arg::U(_))
                | (Param::Float, Arg::F(_))
        );
        if !ok {
            return Err(format!(
                "kernel {name} argument {i}: expected {p:?}, the launch passes {a:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_launched_kernel_has_a_parsed_signature() {
        for (file, name) in FUNCTIONS {
            let params = signature(file, name).unwrap();
            assert!(!params.is_empty(), "{name}");
        }
        use Param::*;
        assert_eq!(
            signature("attention.cu", "kv_write").unwrap(),
            vec![Ptr, Ptr, Ptr, Int, Int, Ptr, Ptr]
        );
        assert_eq!(
            signature("moe.cu", "swiglu").unwrap(),
            vec![Ptr, U64, Int, Ptr]
        );
        assert_eq!(signature("attention.cu", "qk_norm_rope").unwrap()[9], Float);
        // The fp16 embedding and LM head: `embed_f16` is not `embed`'s signature by prefix.
        assert_eq!(
            signature("norm.cu", "embed_f16").unwrap(),
            vec![Ptr, Ptr, Int, Ptr]
        );
        assert_eq!(
            signature("int4_gemm.cu", "f16_gemv").unwrap(),
            vec![Ptr, Int, Int, Ptr, Int, Ptr]
        );
        assert_eq!(
            signature("weights.cu", "uniform_f16").unwrap(),
            vec![Ptr, U64, U64, Float, Ptr]
        );
        assert!(signature("moe.cu", "nope").is_err());
    }

    #[test]
    fn launches_with_wrong_arguments_are_named() {
        let params = signature("norm.cu", "add_inplace").unwrap();
        assert!(check_args("add_inplace", &params, &[Arg::P(1), Arg::P(2), Arg::U(3)]).is_ok());
        let short = check_args("add_inplace", &params, &[Arg::P(1), Arg::P(2)]).unwrap_err();
        assert!(short.contains("takes 3 arguments"), "{short}");
        let kind =
            check_args("add_inplace", &params, &[Arg::P(1), Arg::P(2), Arg::I(3)]).unwrap_err();
        assert!(kind.contains("argument 2"), "{kind}");
    }
}
