//! Planning a CUDA run over devices (host only, unit tested on the CPU): which device each
//! stage of a two-stage `selected_layer_split_plan` runs on, which layers and tensors it holds,
//! what it needs in device memory, and the memory check per device against that device's free
//! VRAM with the "fewer layers" error naming the device.
//!
//! The stage boundary is the CPU split's ([`LayerSplitPlan::boundary`]), so a split CUDA run
//! computes the same layers in the same order as the unsplit one; only where the hidden rows
//! live between layers `boundary − 1` and `boundary` changes.

use std::collections::BTreeMap;

use super::memory::{gib, MemoryPlan, StagePart, HEADROOM_BYTES};
use crate::engine::reference::knobs::LayerSplitPlan;
use crate::engine::reference::spec::EngineSpec;

/// Largest device index `[engine] cuda_devices` accepts (a bound on a number a user types; the
/// visible devices are checked when the engine starts).
pub const MAX_DEVICE_INDEX: usize = 63;

/// How the hidden rows cross from one stage to the next.
pub const HANDOFF: &str = "device-to-host-to-device copy of the f32 hidden rows (rows x hidden) per call or microbatch; no peer copy: it needs no P2P support between the two devices, works unchanged when both stages share one device, and lets stage 0 start the next microbatch while stage 1 still holds the copy";

/// The device of every stage and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMap {
    /// Device index of stage `s`.
    pub devices: Vec<usize>,
    /// How the mapping was chosen (recorded in the engine details).
    pub note: String,
}

/// Maps `stages` stages onto `visible` CUDA devices: `requested` (`[engine] cuda_devices`) when
/// given, else stage `s` → device `s` when there are enough devices, else (one device, two
/// stages) both stages on device 0 with a note saying so.
pub fn map_devices(
    requested: Option<&[usize]>,
    stages: usize,
    visible: usize,
) -> Result<DeviceMap, String> {
    if visible == 0 {
        return Err("no CUDA device is visible".to_string());
    }
    let stage_word = if stages == 1 {
        "1 stage (no selected_layer_split_plan)".to_string()
    } else {
        format!("{stages} stages (a {stages}-stage selected_layer_split_plan)")
    };
    if let Some(list) = requested {
        if list.len() != stages {
            let example = if stages == 1 {
                "[0]"
            } else {
                "[0, 1] (or [0, 0] on one GPU)"
            };
            return Err(format!(
                "[engine] cuda_devices = {list:?} names {} device(s) but the run has {stage_word}: give one index per stage, e.g. cuda_devices = {example}",
                list.len()
            ));
        }
        if let Some((i, d)) = list.iter().enumerate().find(|(_, d)| **d >= visible) {
            return Err(format!(
                "[engine] cuda_devices entry {i} is device {d} but only {visible} CUDA device(s) are visible (0..={}): use a visible index",
                visible - 1
            ));
        }
        let shared = stages > 1 && list.windows(2).any(|w| w[0] == w[1]);
        let note = if shared {
            format!("[engine] cuda_devices = {list:?}: stages share a device (separate weights, KV pools, workspaces and streams on it)")
        } else {
            format!("[engine] cuda_devices = {list:?}")
        };
        return Ok(DeviceMap {
            devices: list.to_vec(),
            note,
        });
    }
    if stages <= visible {
        return Ok(DeviceMap {
            devices: (0..stages).collect(),
            note: if stages == 1 {
                "device 0 (default)".to_string()
            } else {
                "stage s on device s (default with enough devices)".to_string()
            },
        });
    }
    Ok(DeviceMap {
        devices: vec![0; stages],
        note: format!(
            "only {visible} CUDA device visible: all {stages} stages run on device 0 (separate weights, KV pools, workspaces and streams on it); set [engine] cuda_devices to choose"
        ),
    })
}

/// One stage of a CUDA run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Stage number.
    pub index: usize,
    /// CUDA device index.
    pub device: usize,
    /// Layers and tensors it holds.
    pub part: StagePart,
    /// What it allocates on its device.
    pub memory: MemoryPlan,
    /// KV blocks per layer the plan was made for.
    pub pool_blocks: usize,
    /// Rows per call the workspace was sized for.
    pub rows: usize,
}

/// The stages of a run: one holding everything without a split, else two split at the plan's
/// boundary for `spec.num_layers`, on `devices` (one per stage).
pub fn plan_stages(
    spec: &EngineSpec,
    split: Option<&LayerSplitPlan>,
    devices: &[usize],
    pool_blocks: usize,
    rows: usize,
) -> Result<Vec<Stage>, String> {
    let parts = parts(spec.num_layers, split)?;
    if parts.len() != devices.len() {
        return Err(format!(
            "{} stage(s) but {} device(s) mapped",
            parts.len(),
            devices.len()
        ));
    }
    Ok(parts
        .into_iter()
        .zip(devices)
        .enumerate()
        .map(|(index, (part, &device))| Stage {
            index,
            device,
            memory: MemoryPlan::for_stage(spec, &part, pool_blocks, rows),
            part,
            pool_blocks,
            rows,
        })
        .collect())
}

/// The parts of `layers` layers: all of them, or `[0, b)` and `[b, layers)` at the CPU split's
/// boundary `b`.
fn parts(layers: usize, split: Option<&LayerSplitPlan>) -> Result<Vec<StagePart>, String> {
    let Some(plan) = split else {
        return Ok(vec![StagePart {
            layers: 0..layers,
            embed: true,
            head: true,
        }]);
    };
    if layers < 2 {
        return Err(format!(
            "a two-stage layer split needs at least 2 layers, [engine] num_layers is {layers}"
        ));
    }
    let b = plan.boundary(layers);
    Ok(vec![
        StagePart {
            layers: 0..b,
            embed: true,
            head: false,
        },
        StagePart {
            layers: b..layers,
            embed: false,
            head: true,
        },
    ])
}

/// Bytes every device needs: its stages' plans plus [`HEADROOM_BYTES`] once (stages sharing a
/// device share its context).
pub fn need_per_device(stages: &[Stage]) -> BTreeMap<usize, u64> {
    let mut need = BTreeMap::new();
    for s in stages {
        *need.entry(s.device).or_insert(HEADROOM_BYTES) += s.memory.total();
    }
    need
}

/// `Ok` when every device's stages fit its free memory (`free(device)`), else the error of the
/// first device that does not: what its stages need, what is free, and the largest
/// `num_layers` with which every device fits (the boundary rescaled as the plan does).
pub fn check_memory(
    spec: &EngineSpec,
    split: Option<&LayerSplitPlan>,
    stages: &[Stage],
    free: &dyn Fn(usize) -> u64,
) -> Result<(), String> {
    let need = need_per_device(stages);
    let Some((&device, &bytes)) = need.iter().find(|(d, n)| **n > free(**d)) else {
        return Ok(());
    };
    let on_device: Vec<&Stage> = stages.iter().filter(|s| s.device == device).collect();
    let sum = |f: fn(&MemoryPlan) -> u64| on_device.iter().map(|s| f(&s.memory)).sum::<u64>();
    let what = on_device
        .iter()
        .map(|s| {
            format!(
                "stage {} layers {}..{}",
                s.index, s.part.layers.start, s.part.layers.end
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let advice = match fitting_layers(spec, split, stages, free) {
        Some(n) => {
            format!("set [engine] num_layers = {n} or fewer (or lower FERRUM_KV_MAX_BLOCKS)")
        }
        None => "no layer count fits: lower FERRUM_KV_MAX_BLOCKS or max_batched_tokens".to_string(),
    };
    Err(format!(
        "CUDA device {device} ({what}): needs {:.2} GiB (weights {:.2}, KV pool {:.2}, workspace {:.2}, headroom {:.2}) but {:.2} GiB are free: {advice}",
        gib(bytes),
        gib(sum(|m| m.weights)),
        gib(sum(|m| m.kv)),
        gib(sum(|m| m.workspace)),
        gib(HEADROOM_BYTES),
        gib(free(device)),
    ))
}

/// The largest layer count below `spec.num_layers` with which every device fits, keeping the
/// stages' devices, KV pool and call size and rescaling the boundary as the plan does. Both
/// stages' layer counts grow with the total, so fitting is monotone: a binary search.
fn fitting_layers(
    spec: &EngineSpec,
    split: Option<&LayerSplitPlan>,
    stages: &[Stage],
    free: &dyn Fn(usize) -> u64,
) -> Option<usize> {
    let devices: Vec<usize> = stages.iter().map(|s| s.device).collect();
    let (pool_blocks, rows) = stages
        .first()
        .map(|s| (s.pool_blocks, s.rows))
        .unwrap_or_default();
    let fits = |n: usize| {
        let mut smaller = spec.clone();
        smaller.num_layers = n;
        plan_stages(&smaller, split, &devices, pool_blocks, rows).is_ok_and(|st| {
            need_per_device(&st)
                .iter()
                .all(|(d, need)| *need <= free(*d))
        })
    };
    let (mut lo, mut hi) = (if split.is_some() { 2 } else { 1 }, spec.num_layers);
    if hi <= lo || !fits(lo) {
        return None;
    }
    // Invariant: fits(lo), and hi does not fit (the caller saw it fail).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reference::spec::Device;

    const GIB: u64 = 1 << 30;

    fn plan_72b() -> LayerSplitPlan {
        LayerSplitPlan::parse("stage0:cuda:0:layers=0-39;stage1:cuda:1:layers=40-79").unwrap()
    }

    #[test]
    fn devices_default_to_one_per_stage_and_fall_back_to_device_0_with_a_note() {
        let two = map_devices(None, 2, 2).unwrap();
        assert_eq!(two.devices, vec![0, 1]);
        let many = map_devices(None, 2, 8).unwrap();
        assert_eq!(many.devices, vec![0, 1]);
        let one = map_devices(None, 2, 1).unwrap();
        assert_eq!(one.devices, vec![0, 0]);
        assert!(
            one.note.contains("all 2 stages run on device 0"),
            "{}",
            one.note
        );
        assert_eq!(map_devices(None, 1, 4).unwrap().devices, vec![0]);
        let asked = map_devices(Some(&[0, 0]), 2, 2).unwrap();
        assert_eq!(asked.devices, vec![0, 0]);
        assert!(asked.note.contains("share a device"), "{}", asked.note);
        assert_eq!(
            map_devices(Some(&[3, 1]), 2, 4).unwrap().devices,
            vec![3, 1]
        );
        assert_eq!(map_devices(Some(&[2]), 1, 4).unwrap().devices, vec![2]);
    }

    #[test]
    fn a_bad_device_mapping_is_a_clear_error() {
        let missing = map_devices(Some(&[0, 1]), 2, 1).unwrap_err();
        assert!(
            missing.contains("entry 1 is device 1 but only 1 CUDA device(s) are visible"),
            "{missing}"
        );
        let count = map_devices(Some(&[0]), 2, 2).unwrap_err();
        assert!(
            count.contains("names 1 device(s) but the run has 2 stages"),
            "{count}"
        );
        let unsplit = map_devices(Some(&[0, 0]), 1, 1).unwrap_err();
        assert!(unsplit.contains("e.g. cuda_devices = [0]"), "{unsplit}");
        assert!(map_devices(None, 1, 0)
            .unwrap_err()
            .contains("no CUDA device"));
    }

    #[test]
    fn engine_cuda_devices_is_bounded_and_validated() {
        use crate::engine::reference::spec::EngineTable;
        let with = |list: Vec<i64>, device: Option<&str>| {
            let t = EngineTable {
                cuda_devices: Some(list),
                device: device.map(str::to_string),
                ..Default::default()
            };
            EngineSpec::resolve_for_device(Some(&t), "qwen2", Device::Cuda)
                .map(|s| s.cuda_devices)
                .map_err(|e| e.to_string())
        };
        assert_eq!(with(vec![0, 0], None).unwrap(), Some(vec![0, 0]));
        assert_eq!(with(vec![1], Some("cuda")).unwrap(), Some(vec![1]));
        let bad = [
            (vec![], None, "give 1 index (no layer split) or 2"),
            (
                vec![0, 1, 2],
                None,
                "or 2 (one per stage of a two-stage split), not 3",
            ),
            (vec![-1, 0], None, "device index -1 is outside 0..=63"),
            (vec![0, 64], None, "device index 64 is outside 0..=63"),
            (vec![0], Some("cpu"), "does not apply to device = \"cpu\""),
        ];
        for (list, device, want) in bad {
            let e = with(list, device).unwrap_err();
            assert!(e.contains("invalid [engine] cuda_devices = ["), "{e}");
            assert!(e.contains(want), "{e}");
        }
        let unset = EngineSpec::resolve_for_device(None, "qwen2", Device::Cuda).unwrap();
        assert_eq!(unset.cuda_devices, None);
    }

    #[test]
    fn stages_take_the_cpu_split_boundary_and_their_own_tensors() {
        let spec = EngineSpec::resolve_for_device(None, "qwen2", Device::Cuda).unwrap();
        let plan = plan_72b();
        let stages = plan_stages(&spec, Some(&plan), &[0, 1], 512, 256).unwrap();
        assert_eq!(stages.len(), 2);
        let b = plan.boundary(spec.num_layers);
        assert_eq!(b, 40);
        assert_eq!(stages[0].part.layers, 0..40);
        assert_eq!(stages[1].part.layers, 40..80);
        assert!(stages[0].part.embed && !stages[0].part.head);
        assert!(!stages[1].part.embed && stages[1].part.head);
        assert_eq!((stages[0].device, stages[1].device), (0, 1));
        // Weights and KV of the two stages add up to the unsplit model's; the workspace does
        // not (each stage has its own, and only the last holds logits buffers).
        let whole = MemoryPlan::new(&spec, 512, 256);
        let (m0, m1) = (&stages[0].memory, &stages[1].memory);
        assert_eq!(m0.weights + m1.weights, whole.weights);
        assert_eq!(m0.kv + m1.kv, whole.kv);
        assert_eq!(m0.kv, 40 * whole.per_layer_kv);
        assert!(m0.workspace < m1.workspace && m1.workspace == whole.workspace);
        // Stage 0 holds the embedding, stage 1 the final norm and LM head (same size here:
        // fp16, 2 bytes a value, as GPTQ checkpoints keep them).
        let layer = whole.per_layer_weights;
        let embed = (spec.vocab_size * spec.hidden_size * 2) as u64;
        assert_eq!(m0.weights, 40 * layer + embed);
        assert_eq!(m1.weights, 40 * layer + embed + spec.hidden_size as u64 * 4);
        // The CPU split of a CPU-sized engine: the plan scaled to its layer count.
        let cpu = EngineSpec::resolve_for_device(None, "qwen2", Device::Cpu).unwrap();
        let s = plan_stages(&cpu, Some(&plan), &[0, 0], 64, 64).unwrap();
        assert_eq!(s[0].part.layers, 0..plan.boundary(cpu.num_layers));
        assert_eq!(s[1].part.layers.end, cpu.num_layers);
        // Unsplit: one stage with everything.
        let one = plan_stages(&spec, None, &[0], 512, 256).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].memory, whole);
        assert!(plan_stages(&spec, Some(&plan), &[0], 512, 256).is_err());
    }

    /// Free bytes of an RTX 4090 (24 GB card) with a desktop-free driver: 23.55 GiB.
    const FREE_4090: u64 = 25_282_281_472;

    #[test]
    fn real_models_fit_24_gb_rtx_4090s_with_fp16_embedding_and_lm_head() {
        use crate::engine::reference::knobs::EngineKnobs;
        use crate::engine::reference::kv_limits;
        let fits = |spec: &EngineSpec, split: Option<&LayerSplitPlan>, pool: usize, rows: usize| {
            let devices: &[usize] = if split.is_some() { &[0, 1] } else { &[0] };
            let stages = plan_stages(spec, split, devices, pool, rows).unwrap();
            let need = need_per_device(&stages);
            let gibs: Vec<String> = need.values().map(|b| format!("{:.2}", gib(*b))).collect();
            println!(
                "{} layers, {pool} KV blocks, {rows}-row calls: {} GiB",
                spec.num_layers,
                gibs.join(" / ")
            );
            (
                check_memory(spec, split, &stages, &|_| FREE_4090),
                need.values().copied().collect::<Vec<u64>>(),
            )
        };
        // Qwen2.5-72B GPTQ-int4 split over two 4090s (the Ferrum preset's plan) with a 512-block
        // KV pool (FERRUM_KV_MAX_BLOCKS = 512: 8192 tokens) and 256-token calls.
        let spec = EngineSpec::resolve_for_device(None, "qwen2", Device::Cuda).unwrap();
        assert_eq!(
            (spec.vocab_size, spec.hidden_size, spec.num_layers),
            (152_064, 8192, 80)
        );
        let plan = plan_72b();
        let (ok, need) = fits(&spec, Some(&plan), 512, 256);
        assert!(ok.is_ok(), "{ok:?}");
        // The fp16 embedding and LM head are what makes it fit: in f32 (2 more bytes a value,
        // 2.32 GiB more on each side) neither device would.
        let f32_extra = (spec.vocab_size * spec.hidden_size * 2) as u64;
        assert!(need.iter().all(|n| n + f32_extra > FREE_4090), "{need:?}");
        // At the engine's default knobs (1024 blocks, 2048-token calls) it does not: the
        // README says which knobs to lower.
        let knobs = EngineKnobs::default();
        // The CUDA engine's call size (`engine::max_call_rows`, behind the `cuda` feature).
        let rows = knobs.max_batched_tokens.max(knobs.max_sequences).max(1);
        let pool = kv_limits(&spec, &knobs).unwrap().pool_blocks;
        assert_eq!((pool, rows), (1024, 2048));
        assert!(fits(&spec, Some(&plan), pool, rows).0.is_err());
        // Qwen3-30B-A3B unsplit on one 4090, at the default knobs and at the m3 preset's pool.
        let moe = EngineSpec::resolve_for_device(None, "qwen3_moe", Device::Cuda).unwrap();
        let pool = kv_limits(&moe, &knobs).unwrap().pool_blocks;
        assert!(fits(&moe, None, pool, rows).0.is_ok());
        assert!(fits(&moe, None, 2048, 2048).0.is_ok());
    }

    #[test]
    fn qwen25_72b_fits_two_24_gib_cards_and_the_error_names_the_device() {
        let spec = EngineSpec::resolve_for_device(None, "qwen2", Device::Cuda).unwrap();
        let plan = plan_72b();
        let stages = plan_stages(&spec, Some(&plan), &[0, 1], 512, 256).unwrap();
        let need = need_per_device(&stages);
        // About 40 GiB of int4 weights plus 2 x 2.3 GiB fp16 embedding/LM head: ~22.6 GiB a side.
        assert!(need[&0] > 18 * GIB && need[&0] < 26 * GIB, "{need:?}");
        assert!(need[&1] > need[&0]);
        // Two H200s hold it, and so do two 4090s with 23.55 GiB free each.
        assert!(check_memory(&spec, Some(&plan), &stages, &|_| 139 * GIB).is_ok());
        assert!(check_memory(&spec, Some(&plan), &stages, &|_| FREE_4090).is_ok());
        println!(
            "72B split need per device: {:.2} / {:.2} GiB",
            gib(need[&0]),
            gib(need[&1])
        );
        // A 4090 with 1 GiB taken (22.55 GiB free): device 0 is named first, with a layer
        // count that fits both.
        let busy = |_d: usize| FREE_4090 - GIB;
        let e = check_memory(&spec, Some(&plan), &stages, &busy).unwrap_err();
        assert!(e.starts_with("CUDA device 0 (stage 0 layers 0..40)"), "{e}");
        assert!(e.contains("num_layers ="), "{e}");
        println!("72B on two busy 4090s: {e}");
        // A 16 GiB second card: the error names device 1 and a layer count that really fits.
        let small = |d: usize| if d == 0 { 139 * GIB } else { 16 * GIB };
        let e = check_memory(&spec, Some(&plan), &stages, &small).unwrap_err();
        assert!(
            e.starts_with("CUDA device 1 (stage 1 layers 40..80)"),
            "{e}"
        );
        let n = super::super::memory::suggested_layers(&e);
        let with = |n: usize| {
            let mut s = spec.clone();
            s.num_layers = n;
            let st = plan_stages(&s, Some(&plan), &[0, 1], 512, 256).unwrap();
            check_memory(&s, Some(&plan), &st, &small)
        };
        assert!(n > 2 && n < 80, "{n}");
        assert!(with(n).is_ok());
        assert!(with(n + 1).is_err());
    }

    #[test]
    fn stages_sharing_one_device_are_checked_together() {
        let spec = EngineSpec::resolve_for_device(None, "qwen3_moe", Device::Cuda).unwrap();
        let plan =
            LayerSplitPlan::parse("stage0:cuda:0:layers=0-23;stage1:cuda:1:layers=24-47").unwrap();
        let shared = plan_stages(&spec, Some(&plan), &[0, 0], 2048, 2048).unwrap();
        let need = need_per_device(&shared);
        assert_eq!(need.len(), 1);
        assert_eq!(
            need[&0],
            shared[0].memory.total() + shared[1].memory.total() + HEADROOM_BYTES
        );
        // One H200 holds both halves of Qwen3-30B-A3B.
        assert!(check_memory(&spec, Some(&plan), &shared, &|_| 139 * GIB).is_ok());
        // Half of what both need: the error names device 0 with both stages.
        let e = check_memory(&spec, Some(&plan), &shared, &|_| need[&0] / 2).unwrap_err();
        assert!(
            e.starts_with("CUDA device 0 (stage 0 layers 0..24, stage 1 layers 24..48)"),
            "{e}"
        );
        // Unsplit on one device: the suggestion fits and one more layer does not.
        let one = plan_stages(&spec, None, &[0], 2048, 2048).unwrap();
        let free = |_d: usize| 16 * GIB;
        let e = check_memory(&spec, None, &one, &free).unwrap_err();
        assert!(e.starts_with("CUDA device 0 (stage 0 layers 0..48)"), "{e}");
        let n = super::super::memory::suggested_layers(&e);
        let fits = |n: usize| {
            let mut s = spec.clone();
            s.num_layers = n;
            let st = plan_stages(&s, None, &[0], 2048, 2048).unwrap();
            check_memory(&s, None, &st, &free).is_ok()
        };
        assert!(fits(n) && !fits(n + 1), "{n}");
    }
}
