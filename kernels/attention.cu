// q/k norm + RoPE, paged-KV writes and paged attention (prefill and decode share one kernel: every query
// token attends to positions 0..=pos of its own sequence through its block table). KV pools
// per layer: [blocks][16][kv_heads * head_dim] fp16 (as raw halves), 16-token blocks as on the
// CPU.

#define KV_BLOCK 16
#define MAX_HEAD_DIM 256

// Per-head RMSNorm of q and k (qwen3_moe; `norm` = 0 skips it) then rotary embedding
// (rotate-half) in place on the q and k heads of `qkv` [tokens][width] (q heads first, then k
// heads, each head_dim wide), at `pos[token]`: a' = a cos - b sin, b' = b cos + a sin, angle =
// pos * inv_freq[i] in double as on the CPU. Grid (tokens, heads + kv_heads), one warp per head.
// `__fmul_rn` & co. keep the CPU's rounding (no fused multiply-adds).
extern "C" __global__ void qk_norm_rope(float* qkv, const int* pos, int width, int heads,
                                        int kv_heads, int head_dim, const float* q_gain,
                                        const float* k_gain, int norm, float eps,
                                        const float* inv_freq) {
    int t = blockIdx.x, h = blockIdx.y, lane = threadIdx.x & 31;
    if (h >= heads + kv_heads) return;
    float* v = qkv + (u64)t * width + (u64)h * head_dim;
    if (norm) {
        const float* g = h < heads ? q_gain : k_gain;
        float ss = 0.0f;
        for (int d = lane; d < head_dim; d += 32) ss += v[d] * v[d];
        ss = warp_sum(ss);
        float inv = 1.0f / sqrtf(ss / (float)head_dim + eps);
        for (int d = lane; d < head_dim; d += 32) v[d] = __fmul_rn(__fmul_rn(v[d], inv), g[d]);
        __syncwarp();
    }
    int half = head_dim >> 1;
    double p = (double)pos[t];
    for (int i = lane; i < half; i += 32) {
        double s, c;
        sincos(p * (double)inv_freq[i], &s, &c);
        float cf = (float)c, sf = (float)s;
        float x1 = v[i], x2 = v[half + i];
        v[i] = __fsub_rn(__fmul_rn(x1, cf), __fmul_rn(x2, sf));
        v[half + i] = __fadd_rn(__fmul_rn(x2, cf), __fmul_rn(x1, sf));
    }
}

// k/v rows (`width` values, rows `src_stride` floats apart, e.g. inside the qkv rows) into the
// pools at slot[token] = block * 16 + offset.
extern "C" __global__ void kv_write(const float* k, const float* v, const int* slot, int width,
                                    int src_stride, f16raw* k_pool, f16raw* v_pool) {
    int t = blockIdx.x;
    u64 base = (u64)slot[t] * width;
    for (int c = threadIdx.x; c < width; c += blockDim.x) {
        k_pool[base + c] = f2h(k[(u64)t * src_stride + c]);
        v_pool[base + c] = f2h(v[(u64)t * src_stride + c]);
    }
}

// One warp per (query token, query head): online softmax over the token's positions
// 0..=pos[t]; query head h reads KV head h / (heads / kv_heads). `tables` holds every
// sequence's block table; table_start[t] is where token t's starts. Token t's query heads start
// at q + t * q_stride (q_stride = heads * head_dim for a packed q, the qkv width inside qkv).
extern "C" __global__ void paged_attention(const float* __restrict__ q, int q_stride,
                                           const int* __restrict__ pos,
                                           const int* __restrict__ table_start,
                                           const int* __restrict__ tables,
                                           const f16raw* __restrict__ k_pool,
                                           const f16raw* __restrict__ v_pool, int heads,
                                           int kv_heads, int head_dim, float scale,
                                           float* __restrict__ out) {
    int t = blockIdx.x;
    int h = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (h >= heads) return;
    int kvh = h / (heads / kv_heads);
    int width = kv_heads * head_dim;
    int per_lane = (head_dim + 31) >> 5;
    const float* qv = q + (u64)t * q_stride + (u64)h * head_dim;
    float qr[MAX_HEAD_DIM / 32], acc[MAX_HEAD_DIM / 32];
#pragma unroll
    for (int i = 0; i < MAX_HEAD_DIM / 32; ++i) {
        int d = lane + 32 * i;
        qr[i] = (i < per_lane && d < head_dim) ? qv[d] * scale : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int* table = tables + table_start[t];
    for (int p = 0; p <= pos[t]; ++p) {
        u64 slot = (u64)table[p / KV_BLOCK] * KV_BLOCK + (p % KV_BLOCK);
        const f16raw* kr = k_pool + slot * width + (u64)kvh * head_dim;
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < MAX_HEAD_DIM / 32; ++i) {
            int d = lane + 32 * i;
            if (i < per_lane && d < head_dim) dot += qr[i] * h2f(kr[d]);
        }
        dot = warp_sum(dot);
        float m_new = fmaxf(m, dot);
        float correction = __expf(m - m_new);
        float w = __expf(dot - m_new);
        l = l * correction + w;
        const f16raw* vr = v_pool + slot * width + (u64)kvh * head_dim;
#pragma unroll
        for (int i = 0; i < MAX_HEAD_DIM / 32; ++i) {
            int d = lane + 32 * i;
            float vv = (i < per_lane && d < head_dim) ? h2f(vr[d]) : 0.0f;
            acc[i] = acc[i] * correction + w * vv;
        }
        m = m_new;
    }
    float* o = out + ((u64)t * heads + h) * head_dim;
#pragma unroll
    for (int i = 0; i < MAX_HEAD_DIM / 32; ++i) {
        int d = lane + 32 * i;
        if (i < per_lane && d < head_dim) o[d] = acc[i] / l;
    }
}
