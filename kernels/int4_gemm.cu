// GPTQ-int4 matmuls with fused dequantisation: y[m, n] = sum_k x[m, k] * W[n, k], W stored as
// on the CPU (32-value packed blocks of 16 bytes per row, per-group scale/offset, group a
// multiple of 32). Every weight byte is read once per call, whatever m is.

#define GEMV_MAX_M 8

// Small m (1..8, decode): one warp per output feature; lane l reads 16-byte blocks l, l+32, ...
// (coalesced), dequantises 32 values and dots them with every activation row.
extern "C" __global__ void int4_gemv(const float* __restrict__ x, int m, int k,
                                     const unsigned char* __restrict__ packed,
                                     const float* __restrict__ scales,
                                     const float* __restrict__ offsets, int n, int group,
                                     float* __restrict__ y) {
    int row = (int)((blockIdx.x * (u64)blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    if (row >= n) return;
    const uint4* rp = (const uint4*)(packed + (u64)row * (k >> 1));
    int groups = k / group;
    const float* sc = scales + (u64)row * groups;
    const float* of = offsets + (u64)row * groups;
    float acc[GEMV_MAX_M];
#pragma unroll
    for (int r = 0; r < GEMV_MAX_M; ++r) acc[r] = 0.0f;
    int blocks = k >> 5;
    for (int b = lane; b < blocks; b += 32) {
        uint4 v = rp[b];
        u32 words[4] = {v.x, v.y, v.z, v.w};
        int g = (b << 5) / group;
        float s = sc[g], o = of[g];
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            u32 byte = (words[i >> 2] >> ((i & 3) * 8)) & 0xffu;
            float lo = s * (float)(byte & 15u) + o;
            float hi = s * (float)(byte >> 4) + o;
#pragma unroll
            for (int r = 0; r < GEMV_MAX_M; ++r) {
                if (r < m) {
                    const float* xr = x + (u64)r * k + (b << 5);
                    acc[r] += lo * xr[i] + hi * xr[16 + i];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < GEMV_MAX_M; ++r) {
        float t = warp_sum(acc[r]);
        if (lane == 0 && r < m) y[(u64)r * n + row] = t;
    }
}

#define TM 64
#define TN 64
#define TK 32

// Tile of the int4 GEMM: 64 activation rows x 64 output features, 256 threads computing 4x4
// each; the weight tile is dequantised into shared memory once per k-step.
__device__ __forceinline__ void int4_gemm_tile(const float* __restrict__ x, int m, int k,
                                               const unsigned char* __restrict__ packed,
                                               const float* __restrict__ scales,
                                               const float* __restrict__ offsets, int n,
                                               int group, float* __restrict__ y, int m0, int n0) {
    __shared__ float xs[TM][TK + 1];
    __shared__ float ws[TN][TK + 1];
    int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    int groups = k / group;
    for (int k0 = 0; k0 < k; k0 += TK) {
        for (int e = threadIdx.x; e < TM * TK; e += blockDim.x) {
            int r = e / TK, c = e % TK;
            xs[r][c] = (m0 + r < m) ? x[(u64)(m0 + r) * k + k0 + c] : 0.0f;
        }
        for (int e = threadIdx.x; e < TN * TK; e += blockDim.x) {
            int r = e / TK, c = e % TK;
            float w = 0.0f;
            if (n0 + r < n) {
                u64 row = (u64)(n0 + r);
                w = int4_at(packed + row * (k >> 1), scales + row * groups,
                            offsets + row * groups, k0 + c, group);
            }
            ws[r][c] = w;
        }
        __syncthreads();
#pragma unroll 4
        for (int c = 0; c < TK; ++c) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = xs[ty * 4 + i][c];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = ws[tx * 4 + j][c];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int r = m0 + ty * 4 + i, c = n0 + tx * 4 + j;
            if (r < m && c < n) y[(u64)r * n + c] = acc[i][j];
        }
}

// Large m (prefill, batched decode): grid (ceil(n/64), ceil(m/64)), 256 threads.
extern "C" __global__ void int4_gemm(const float* __restrict__ x, int m, int k,
                                     const unsigned char* __restrict__ packed,
                                     const float* __restrict__ scales,
                                     const float* __restrict__ offsets, int n, int group,
                                     float* __restrict__ y) {
    int4_gemm_tile(x, m, k, packed, scales, offsets, n, group, y, blockIdx.y * TM,
                   blockIdx.x * TN);
}

// Grouped expert GEMM (MoE, tokens grouped by expert): rows of expert e are
// x[row_offsets[e] .. row_offsets[e+1]); expert e's weights start at e * (n * k / 2) bytes and
// e * (n * k / group) groups. Grid (ceil(n/64), row tiles, experts); tiles past an expert's rows
// exit at once.
extern "C" __global__ void int4_gemm_grouped(const float* __restrict__ x,
                                             const int* __restrict__ row_offsets, int k,
                                             const unsigned char* __restrict__ packed,
                                             const float* __restrict__ scales,
                                             const float* __restrict__ offsets, int n,
                                             int group, float* __restrict__ y) {
    int e = blockIdx.z;
    int begin = row_offsets[e], end = row_offsets[e + 1];
    int m0 = blockIdx.y * TM;
    if (begin + m0 >= end) return;
    u64 wbytes = (u64)n * (k >> 1), wgroups = (u64)n * (k / group);
    int4_gemm_tile(x + (u64)begin * k, end - begin, k, packed + e * wbytes,
                   scales + e * wgroups, offsets + e * wgroups, n, group, y + (u64)begin * n,
                   m0, blockIdx.x * TN);
}

// Per-token experts (MoE per item): pair p = (token, slot) multiplies its token's row by its
// expert's weights (weights re-read for every pair, as Ferrum's per-item path does). One warp
// per (pair, output feature): grid covers pairs * n warps.
extern "C" __global__ void int4_gemv_per_pair(const float* __restrict__ x,
                                              const int* __restrict__ pair_token,
                                              const int* __restrict__ pair_expert, int pairs,
                                              int k, const unsigned char* __restrict__ packed,
                                              const float* __restrict__ scales,
                                              const float* __restrict__ offsets, int n,
                                              int group, float* __restrict__ y) {
    u64 wid = (blockIdx.x * (u64)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (wid >= (u64)pairs * n) return;
    int p = (int)(wid / n), row = (int)(wid % n);
    int e = pair_expert[p];
    const float* xr = x + (u64)pair_token[p] * k;
    u64 erow = (u64)e * n + row;
    int groups = k / group;
    const uint4* rp = (const uint4*)(packed + erow * (k >> 1));
    const float* sc = scales + erow * groups;
    const float* of = offsets + erow * groups;
    float acc = 0.0f;
    for (int b = lane; b < (k >> 5); b += 32) {
        uint4 v = rp[b];
        u32 words[4] = {v.x, v.y, v.z, v.w};
        int g = (b << 5) / group;
        float s = sc[g], o = of[g];
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            u32 byte = (words[i >> 2] >> ((i & 3) * 8)) & 0xffu;
            acc += (s * (float)(byte & 15u) + o) * xr[(b << 5) + i];
            acc += (s * (float)(byte >> 4) + o) * xr[(b << 5) + 16 + i];
        }
    }
    acc = warp_sum(acc);
    if (lane == 0) y[(u64)p * n + row] = acc;
}

// Unquantised f32 matmul (MoE router): y[m, n] = x[m, :] . W[n, :]; one warp per (row of
// W, up to 8 rows of x).
extern "C" __global__ void f32_gemv(const float* __restrict__ x, int m, int k,
                                    const float* __restrict__ w, int n, float* __restrict__ y) {
    int row = (int)((blockIdx.x * (u64)blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    int m0 = blockIdx.y * GEMV_MAX_M;
    if (row >= n) return;
    const float* wr = w + (u64)row * k;
    float acc[GEMV_MAX_M];
#pragma unroll
    for (int r = 0; r < GEMV_MAX_M; ++r) acc[r] = 0.0f;
    for (int c = lane; c < k; c += 32) {
        float wv = wr[c];
#pragma unroll
        for (int r = 0; r < GEMV_MAX_M; ++r)
            if (m0 + r < m) acc[r] += wv * x[(u64)(m0 + r) * k + c];
    }
#pragma unroll
    for (int r = 0; r < GEMV_MAX_M; ++r) {
        float t = warp_sum(acc[r]);
        if (lane == 0 && m0 + r < m) y[(u64)(m0 + r) * n + row] = t;
    }
}

// The LM head: y[m, n] = x[m, :] . W[n, :] with W in fp16 (as GPTQ checkpoints keep it), each
// weight widened to f32 exactly and accumulated in f32 in f32_gemv's order; one warp per (row
// of W, up to 8 rows of x).
extern "C" __global__ void f16_gemv(const float* __restrict__ x, int m, int k,
                                    const f16raw* __restrict__ w, int n, float* __restrict__ y) {
    int row = (int)((blockIdx.x * (u64)blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    int m0 = blockIdx.y * GEMV_MAX_M;
    if (row >= n) return;
    const f16raw* wr = w + (u64)row * k;
    float acc[GEMV_MAX_M];
#pragma unroll
    for (int r = 0; r < GEMV_MAX_M; ++r) acc[r] = 0.0f;
    for (int c = lane; c < k; c += 32) {
        float wv = h2f(wr[c]);
#pragma unroll
        for (int r = 0; r < GEMV_MAX_M; ++r)
            if (m0 + r < m) acc[r] += wv * x[(u64)(m0 + r) * k + c];
    }
#pragma unroll
    for (int r = 0; r < GEMV_MAX_M; ++r) {
        float t = warp_sum(acc[r]);
        if (lane == 0 && m0 + r < m) y[(u64)(m0 + r) * n + row] = t;
    }
}
