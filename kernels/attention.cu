// RoPE, paged-KV writes and paged attention (prefill and decode share one kernel: every query
// token attends to positions 0..=pos of its own sequence through its block table). KV pools
// per layer: [blocks][16][kv_heads * head_dim] fp16 (as raw halves), 16-token blocks as on the
// CPU.

#define KV_BLOCK 16
#define MAX_HEAD_DIM 256

// Rotary embedding (rotate-half) in place on `x` [tokens][heads][head_dim] at `pos[token]`:
// a' = a cos - b sin, b' = b cos + a sin for the two halves, angle = pos * theta^(-2i/d).
extern "C" __global__ void rope(float* x, const int* pos, int heads, int head_dim, float theta) {
    int t = blockIdx.x, h = blockIdx.y;
    int half = head_dim >> 1;
    float* v = x + ((u64)t * heads + h) * head_dim;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float inv = powf(theta, -(2.0f * (float)i) / (float)head_dim);
        double a = (double)pos[t] * (double)inv;
        float c = (float)cos(a), s = (float)sin(a);
        float x1 = v[i], x2 = v[half + i];
        v[i] = x1 * c - x2 * s;
        v[half + i] = x2 * c + x1 * s;
    }
}

// k/v rows [tokens][width] into the pools at slot[token] = block * 16 + offset.
extern "C" __global__ void kv_write(const float* k, const float* v, const int* slot, int width,
                                    f16raw* k_pool, f16raw* v_pool) {
    int t = blockIdx.x;
    u64 base = (u64)slot[t] * width;
    for (int c = threadIdx.x; c < width; c += blockDim.x) {
        k_pool[base + c] = f2h(k[(u64)t * width + c]);
        v_pool[base + c] = f2h(v[(u64)t * width + c]);
    }
}

// One warp per (query token, query head): online softmax over the token's positions
// 0..=pos[t]; query head h reads KV head h / (heads / kv_heads). `tables` holds every
// sequence's block table; table_start[t] is where token t's starts.
extern "C" __global__ void paged_attention(const float* __restrict__ q, const int* __restrict__ pos,
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
    const float* qv = q + ((u64)t * heads + h) * head_dim;
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
