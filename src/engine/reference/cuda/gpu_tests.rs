//! Kernel tests on a CUDA device against the CPU engine's code: they print
//! `skipped: no CUDA device` and pass on a machine without one. `scripts/gpu-check.sh` runs
//! them (`cargo test --release gpu_`) on a GPU machine.
//!
//! Tolerances: the device sums in a different order than the CPU (warp shuffles, 64-wide tiles),
//! so f32 results differ by rounding: |gpu − cpu| ≤ 1e-4 · Σ|terms| + 1e-6 per output, i.e. a
//! few ulps of the magnitude of the summed terms, far below what would change a greedy token
//! except at an exact tie. Generated weights and argmax ids are exact.

use cudarc::driver::{LaunchConfig, PushKernelArg};
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::device::Device;
use super::launch::{self, Shape};
use crate::engine::reference::kv::BLOCK_SIZE;
use crate::engine::reference::weights::WeightGen;

/// The device, or `None` after printing why the test is skipped. A machine with a GPU but no
/// NVRTC fails: the GPU checks must not pass silently there.
fn device() -> Option<Device> {
    let probe = crate::hardware::current().expect("hardware probe");
    if let Some(reason) = probe.no_gpu_reason() {
        eprintln!("skipped: {reason}");
        return None;
    }
    Some(Device::open(0).expect("open device 0 with the kernels"))
}

fn cfg(s: Shape) -> LaunchConfig {
    LaunchConfig {
        grid_dim: s.grid,
        block_dim: s.block,
        shared_mem_bytes: 0,
    }
}

fn close(gpu: &[f32], cpu: &[f32], magnitude: &[f32]) {
    assert_eq!(gpu.len(), cpu.len());
    for i in 0..gpu.len() {
        let tol = 1e-4 * magnitude[i] + 1e-6;
        assert!(
            (gpu[i] - cpu[i]).abs() <= tol,
            "output {i}: gpu {} cpu {} (tolerance {tol})",
            gpu[i],
            cpu[i]
        );
    }
}

#[test]
fn gpu_chacha8_words_match_rand_chacha() {
    let Some(dev) = device() else { return };
    let key = WeightGen::key(2026);
    let (first, n) = (5u64, 1000u64);
    let s = &dev.stream;
    let key_d = s.clone_htod(&key).unwrap();
    let mut out = s.alloc_zeros::<u32>(n as usize).unwrap();
    let f = dev.function("weights.cu", "chacha8_words").unwrap();
    let mut b = s.launch_builder(&f);
    b.arg(&key_d).arg(&first).arg(&n).arg(&mut out);
    unsafe { b.launch(cfg(launch::chacha8_words(first, n))) }.unwrap();
    let words = s.clone_dtoh(&out).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    rng.set_word_pos(u128::from(first));
    for (i, w) in words.iter().enumerate() {
        assert_eq!(*w, rng.next_u32(), "word {}", first + i as u64);
    }
}

#[test]
fn gpu_fp16_embedding_and_lm_head_match_the_cpu() {
    let Some(dev) = device() else { return };
    let s = &dev.stream;
    let (vocab, hidden, seed, first) = (97usize, 64usize, 2026u64, 21u64);
    let n = vocab * hidden;
    let key_d = s.clone_htod(&WeightGen::key(seed)).unwrap();
    // Generation: bit-identical to the CPU's f16_vec, at a scale that makes some values fp16
    // subnormals (the rounding that differs most easily).
    for scale in [1.0f32, 1e-5] {
        let mut table = s.alloc_zeros::<u16>(n).unwrap();
        let f = dev.function("weights.cu", "uniform_f16").unwrap();
        let (first_w, n_w) = (first, n as u64);
        let mut b = s.launch_builder(&f);
        b.arg(&key_d)
            .arg(&first_w)
            .arg(&n_w)
            .arg(&scale)
            .arg(&mut table);
        unsafe { b.launch(cfg(launch::chacha8_words(first, n as u64))) }.unwrap();
        let bits = s.clone_dtoh(&table).unwrap();
        let cpu = WeightGen::at_word(seed, first).f16_vec(n, scale);
        for (i, (g, c)) in bits.iter().zip(&cpu).enumerate() {
            assert_eq!(
                *g,
                half::f16::from_f32(*c).to_bits(),
                "value {i} at scale {scale}"
            );
        }
    }
    let mut g = WeightGen::new(5);
    let w = g.f16_vec(n, 0.2);
    let w_bits: Vec<u16> = w
        .iter()
        .map(|v| half::f16::from_f32(*v).to_bits())
        .collect();
    let w_d = s.clone_htod(&w_bits).unwrap();
    // Embedding lookup: exact.
    let ids: Vec<u32> = vec![0, 96, 3, 3, 50];
    let ids_d = s.clone_htod(&ids).unwrap();
    let mut x_d = s.alloc_zeros::<f32>(ids.len() * hidden).unwrap();
    let f = dev.function("norm.cu", "embed_f16").unwrap();
    let hi = hidden as i32;
    let mut b = s.launch_builder(&f);
    b.arg(&ids_d).arg(&w_d).arg(&hi).arg(&mut x_d);
    unsafe { b.launch(cfg(launch::per_row(ids.len(), hidden))) }.unwrap();
    let rows = s.clone_dtoh(&x_d).unwrap();
    for (r, id) in ids.iter().enumerate() {
        let id = *id as usize;
        assert_eq!(
            rows[r * hidden..(r + 1) * hidden],
            w[id * hidden..(id + 1) * hidden]
        );
    }
    // LM head: the CPU's f32 matmul over the same fp16 values, within the f32 tolerance.
    for m in [1usize, 3, 8, 11] {
        let x = g.f32_vec(m * hidden, 1.0);
        let mut cpu = vec![0f32; m * vocab];
        crate::engine::reference::int4::matmul_f32(&x, m, &w, vocab, hidden, &mut cpu);
        let magnitude: Vec<f32> = (0..m * vocab)
            .map(|o| {
                let (r, c) = (o / vocab, o % vocab);
                (0..hidden)
                    .map(|j| (x[r * hidden + j] * w[c * hidden + j]).abs())
                    .sum()
            })
            .collect();
        let x_d = s.clone_htod(&x).unwrap();
        let mut y_d = s.alloc_zeros::<f32>(m * vocab).unwrap();
        let (mi, ki, ni) = (m as i32, hidden as i32, vocab as i32);
        let f = dev.function("int4_gemm.cu", "f16_gemv").unwrap();
        let mut b = s.launch_builder(&f);
        b.arg(&x_d)
            .arg(&mi)
            .arg(&ki)
            .arg(&w_d)
            .arg(&ni)
            .arg(&mut y_d);
        unsafe { b.launch(cfg(launch::gemv(vocab, m))) }.unwrap();
        close(&s.clone_dtoh(&y_d).unwrap(), &cpu, &magnitude);
    }
}

#[test]
fn gpu_int4_gemv_and_gemm_match_the_cpu_kernels() {
    let Some(dev) = device() else { return };
    let (n, k, group) = (384usize, 512usize, 128usize);
    let mut g = WeightGen::new(7);
    let w = g.int4(n, k, group, 1.0 / (k as f32).sqrt());
    let s = &dev.stream;
    let (packed, scales, offsets) = w.parts();
    let packed_d = s.clone_htod(packed).unwrap();
    let scales_d = s.clone_htod(scales).unwrap();
    let offsets_d = s.clone_htod(offsets).unwrap();
    let deq = w.dequantize();
    for m in [1usize, 3, 8, 70] {
        let x = g.f32_vec(m * k, 1.0);
        let mut cpu = vec![0f32; m * n];
        w.matmul(&x, m, &mut cpu);
        let magnitude: Vec<f32> = (0..m * n)
            .map(|o| {
                let (r, c) = (o / n, o % n);
                (0..k).map(|j| (x[r * k + j] * deq[c * k + j]).abs()).sum()
            })
            .collect();
        let x_d = s.clone_htod(&x).unwrap();
        let mut y_d = s.alloc_zeros::<f32>(m * n).unwrap();
        let (mi, ki, ni, gi) = (m as i32, k as i32, n as i32, group as i32);
        let (name, shape) = if launch::use_gemv(m) {
            ("int4_gemv", launch::gemv(n, m))
        } else {
            ("int4_gemm", launch::gemm(n, m))
        };
        let f = dev.function("int4_gemm.cu", name).unwrap();
        let mut b = s.launch_builder(&f);
        b.arg(&x_d)
            .arg(&mi)
            .arg(&ki)
            .arg(&packed_d)
            .arg(&scales_d)
            .arg(&offsets_d)
            .arg(&ni)
            .arg(&gi)
            .arg(&mut y_d);
        unsafe { b.launch(cfg(shape)) }.unwrap();
        close(&s.clone_dtoh(&y_d).unwrap(), &cpu, &magnitude);
    }
}

#[test]
fn gpu_paged_attention_matches_a_contiguous_reference() {
    let Some(dev) = device() else { return };
    let (heads, kv_heads, hd) = (8usize, 2usize, 128usize);
    let width = kv_heads * hd;
    let len = 37usize; // 3 blocks, the last partial
    let mut g = WeightGen::new(11);
    let k = g.f32_vec(len * width, 1.0);
    let v = g.f32_vec(len * width, 1.0);
    let q = g.f32_vec(heads * hd, 1.0);
    // Scattered block table: blocks 5, 1, 3 of a pool of 6.
    let table = [5i32, 1, 3];
    let pool_tokens = 6 * BLOCK_SIZE;
    let slots: Vec<i32> = (0..len)
        .map(|p| table[p / BLOCK_SIZE] * BLOCK_SIZE as i32 + (p % BLOCK_SIZE) as i32)
        .collect();
    let s = &dev.stream;
    let (k_d, v_d, slot_d) = (
        s.clone_htod(&k).unwrap(),
        s.clone_htod(&v).unwrap(),
        s.clone_htod(&slots).unwrap(),
    );
    let mut k_pool = s.alloc_zeros::<u16>(pool_tokens * width).unwrap();
    let mut v_pool = s.alloc_zeros::<u16>(pool_tokens * width).unwrap();
    let f = dev.function("attention.cu", "kv_write").unwrap();
    let w = width as i32;
    let mut b = s.launch_builder(&f);
    b.arg(&k_d)
        .arg(&v_d)
        .arg(&slot_d)
        .arg(&w)
        .arg(&w)
        .arg(&mut k_pool)
        .arg(&mut v_pool);
    unsafe { b.launch(cfg(launch::per_row(len, width))) }.unwrap();
    // The query is the last position's.
    let pos = [(len - 1) as i32];
    let start = [0i32];
    let (q_d, pos_d, start_d, table_d) = (
        s.clone_htod(&q).unwrap(),
        s.clone_htod(&pos).unwrap(),
        s.clone_htod(&start).unwrap(),
        s.clone_htod(&table).unwrap(),
    );
    let mut out_d = s.alloc_zeros::<f32>(heads * hd).unwrap();
    let scale = 1.0 / (hd as f32).sqrt();
    let (h_i, kvh_i, hd_i) = (heads as i32, kv_heads as i32, hd as i32);
    let f = dev.function("attention.cu", "paged_attention").unwrap();
    let mut b = s.launch_builder(&f);
    let q_stride = (heads * hd) as i32;
    b.arg(&q_d)
        .arg(&q_stride)
        .arg(&pos_d)
        .arg(&start_d)
        .arg(&table_d)
        .arg(&k_pool)
        .arg(&v_pool)
        .arg(&h_i)
        .arg(&kvh_i)
        .arg(&hd_i)
        .arg(&scale)
        .arg(&mut out_d);
    unsafe { b.launch(cfg(launch::attention(1, heads))) }.unwrap();
    let gpu = s.clone_dtoh(&out_d).unwrap();
    // Contiguous reference over fp16-rounded K/V (what the pool stores).
    let r = |x: f32| half::f16::from_f32(x).to_f32();
    let mut cpu = vec![0f32; heads * hd];
    let mut magnitude = vec![0f32; heads * hd];
    for h in 0..heads {
        let kvh = h / (heads / kv_heads);
        let scores: Vec<f32> = (0..len)
            .map(|p| {
                (0..hd)
                    .map(|d| q[h * hd + d] * scale * r(k[p * width + kvh * hd + d]))
                    .sum()
            })
            .collect();
        let mx = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = scores.iter().map(|s| (s - mx).exp()).collect();
        let z: f32 = e.iter().sum();
        for d in 0..hd {
            cpu[h * hd + d] = (0..len)
                .map(|p| e[p] / z * r(v[p * width + kvh * hd + d]))
                .sum();
            magnitude[h * hd + d] = 10.0
                * (0..len)
                    .map(|p| (e[p] / z * r(v[p * width + kvh * hd + d])).abs())
                    .sum::<f32>();
        }
    }
    // `__expf` is a fast approximation (2 ulp + range error): the 10x magnitude covers it.
    close(&gpu, &cpu, &magnitude);
}

#[test]
fn gpu_argmax_takes_the_lowest_maximum_like_the_cpu() {
    let Some(dev) = device() else { return };
    let vocab = 151_936usize;
    let mut logits = WeightGen::new(3).f32_vec(2 * vocab, 1.0);
    logits[777] = 5.0;
    logits[9000] = 5.0; // tie: the lower id wins
    logits[vocab + 151_935] = 7.0;
    let s = &dev.stream;
    let l_d = s.clone_htod(&logits).unwrap();
    let mut ids = s.alloc_zeros::<u32>(2).unwrap();
    let v = vocab as i32;
    let f = dev.function("sample.cu", "argmax_rows").unwrap();
    let mut b = s.launch_builder(&f);
    b.arg(&l_d).arg(&v).arg(&mut ids);
    unsafe { b.launch(cfg(launch::per_row(2, 1024))) }.unwrap();
    let ids = s.clone_dtoh(&ids).unwrap();
    let cpu: Vec<u32> = logits
        .chunks(vocab)
        .map(crate::engine::reference::executor::argmax)
        .collect();
    assert_eq!(ids, cpu);
    assert_eq!(ids, vec![777, 151_935]);
}

/// Benchmark, not a test (`--ignored`; `scripts/gpu-check.sh` runs it): int4 GEMV at batch 1
/// on a real Qwen3-30B expert-sized and attention-sized matrix, bytes moved (packed weights +
/// scales/offsets + activations) per second against the DRAM peak. Target: ≥ 70 %.
#[test]
#[ignore = "GPU benchmark: run by scripts/gpu-check.sh"]
fn gpu_bench_int4_gemv_bandwidth() {
    let Some(dev) = device() else { return };
    let peak = dev.peak_bandwidth().unwrap();
    // 16384 x 8192: 64 MiB of int4 weights (larger than L2 on every current GPU).
    let (n, k, group) = (16_384usize, 8_192usize, 128usize);
    let w = WeightGen::new(5).int4(n, k, group, 0.01);
    let s = &dev.stream;
    let (packed, scales, offsets) = w.parts();
    let packed_d = s.clone_htod(packed).unwrap();
    let scales_d = s.clone_htod(scales).unwrap();
    let offsets_d = s.clone_htod(offsets).unwrap();
    let x_d = s.clone_htod(&WeightGen::new(6).f32_vec(k, 1.0)).unwrap();
    let mut y_d = s.alloc_zeros::<f32>(n).unwrap();
    let f = dev.function("int4_gemm.cu", "int4_gemv").unwrap();
    let (mi, ki, ni, gi) = (1i32, k as i32, n as i32, group as i32);
    let mut run = |iters: usize| {
        for _ in 0..iters {
            let mut b = s.launch_builder(&f);
            b.arg(&x_d)
                .arg(&mi)
                .arg(&ki)
                .arg(&packed_d)
                .arg(&scales_d)
                .arg(&offsets_d)
                .arg(&ni)
                .arg(&gi)
                .arg(&mut y_d);
            unsafe { b.launch(cfg(launch::gemv(n, 1))) }.unwrap();
        }
        // Device sync before the timestamp.
        s.synchronize().unwrap();
    };
    run(10);
    let iters = 200;
    let t = std::time::Instant::now();
    run(iters);
    let secs = t.elapsed().as_secs_f64() / iters as f64;
    let bytes = (packed.len() + 4 * (scales.len() + offsets.len()) + 4 * k + 4 * n) as f64;
    let bw = bytes / secs;
    println!(
        "int4_gemv m=1 {n}x{k} (group {group}) on {}: {:.1} us, {:.0} GB/s = {:.0} % of the {:.0} GB/s DRAM peak",
        dev.arch,
        secs * 1e6,
        bw / 1e9,
        100.0 * bw / peak,
        peak / 1e9
    );
}
