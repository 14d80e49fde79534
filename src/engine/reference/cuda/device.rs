//! A CUDA device with the engine's kernels loaded (cudarc's safe layer): context, stream and
//! the compiled modules. Used by the GPU tests and `scripts/gpu-check.sh`.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;

use super::kernels;

/// A device with every kernel file compiled to CUBIN for its architecture and loaded.
pub struct Device {
    /// The context.
    pub ctx: Arc<CudaContext>,
    /// The stream every launch goes to.
    pub stream: Arc<CudaStream>,
    /// `sm_XX`.
    pub arch: String,
    /// The device index.
    pub ordinal: usize,
    modules: HashMap<String, Arc<CudaModule>>,
}

impl Device {
    /// Opens device `ordinal` and loads the kernels (compiled by NVRTC or from the disk cache);
    /// launches go to the context's default stream.
    pub fn open(ordinal: usize) -> Result<Device, String> {
        Device::open_with_stream(ordinal, false)
    }

    /// [`Device::open`], with launches on a stream of its own when `own_stream` (a layer-split
    /// stage: two stages on one device then run concurrently instead of serialising on the
    /// default stream).
    pub fn open_with_stream(ordinal: usize, own_stream: bool) -> Result<Device, String> {
        let probe = crate::hardware::current()?;
        let gpu = probe.gpus.get(ordinal).ok_or_else(|| {
            probe
                .no_gpu_reason()
                .unwrap_or_else(|| format!("no CUDA device {ordinal}"))
        })?;
        let cc = gpu
            .compute_capability_pair()
            .ok_or_else(|| format!("bad compute capability `{}`", gpu.compute_capability))?;
        let arch = kernels::arch_of_compute_capability(cc);
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| format!("cannot open CUDA device {ordinal}: {e}"))?;
        let stream = if own_stream {
            ctx.new_stream()
                .map_err(|e| format!("cannot create a stream on CUDA device {ordinal}: {e}"))?
        } else {
            ctx.default_stream()
        };
        let mut modules = HashMap::new();
        for (name, source) in kernels::FILES {
            let cubin = kernels::cubin_cached(name, source, &arch, &kernels::cache_dir())?;
            let module = ctx
                .load_module(Ptx::from_binary(cubin))
                .map_err(|e| format!("cannot load {name} for {arch}: {e}"))?;
            modules.insert(name.to_string(), module);
        }
        Ok(Device {
            ctx,
            stream,
            arch,
            ordinal,
            modules,
        })
    }

    /// Kernel `function` of kernel file `file`.
    pub fn function(&self, file: &str, function: &str) -> Result<CudaFunction, String> {
        self.modules
            .get(file)
            .ok_or_else(|| format!("no kernel file {file}"))?
            .load_function(function)
            .map_err(|e| format!("{file}: no kernel {function}: {e}"))
    }

    /// Theoretical DRAM bandwidth in bytes/s: 2 transfers per memory clock × bus width.
    pub fn peak_bandwidth(&self) -> Result<f64, String> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let clock_khz = self
            .ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)
            .map_err(|e| format!("memory clock: {e}"))?;
        let bus_bits = self
            .ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)
            .map_err(|e| format!("bus width: {e}"))?;
        Ok(2.0 * f64::from(clock_khz) * 1e3 * f64::from(bus_bits) / 8.0)
    }

    /// Free and total device memory in bytes.
    pub fn memory(&self) -> Result<(u64, u64), String> {
        self.ctx
            .mem_get_info()
            .map(|(free, total)| (free as u64, total as u64))
            .map_err(|e| format!("cuMemGetInfo failed: {e}"))
    }
}
