// Router softmax / top-k with renormalised weights (Qwen3's norm_topk_prob), grouping of
// (token, expert) pairs by expert for the batched path, SwiGLU and the weighted combine.

#define MAX_TOPK 16

// One warp per token: softmax over `experts` router logits, then the top-k (ties to the lower
// expert id), sorted by expert id as on the CPU, weights renormalised to sum to 1.
extern "C" __global__ void router_topk(const float* __restrict__ logits, int tokens, int experts,
                                       int top_k, int* __restrict__ ids,
                                       float* __restrict__ weights) {
    int t = (int)((blockIdx.x * (u64)blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    if (t >= tokens) return;
    const float* row = logits + (u64)t * experts;
    float mx = -INFINITY;
    for (int e = lane; e < experts; e += 32) mx = fmaxf(mx, row[e]);
    mx = warp_max(mx);
    float z = 0.0f;
    for (int e = lane; e < experts; e += 32) z += __expf(row[e] - mx);
    z = warp_sum(z);
    int chosen[MAX_TOPK];
    float chosen_p[MAX_TOPK];
    float total = 0.0f;
    for (int j = 0; j < top_k && j < MAX_TOPK; ++j) {
        float best = -INFINITY;
        int best_e = 0x7fffffff;
        for (int e = lane; e < experts; e += 32) {
            bool taken = false;
            for (int i = 0; i < j; ++i) taken |= (chosen[i] == e);
            float v = row[e];
            if (!taken && (v > best || (v == best && e < best_e))) {
                best = v;
                best_e = e;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, best, o);
            int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
            if (ov > best || (ov == best && oe < best_e)) {
                best = ov;
                best_e = oe;
            }
        }
        chosen[j] = best_e;
        chosen_p[j] = __expf(best - mx) / z;
        total += chosen_p[j];
    }
    if (lane == 0) {
        // Insertion sort by expert id (k <= 16).
        for (int a = 1; a < top_k; ++a) {
            int e = chosen[a];
            float p = chosen_p[a];
            int b = a - 1;
            while (b >= 0 && chosen[b] > e) {
                chosen[b + 1] = chosen[b];
                chosen_p[b + 1] = chosen_p[b];
                --b;
            }
            chosen[b + 1] = e;
            chosen_p[b + 1] = p;
        }
        for (int j = 0; j < top_k; ++j) {
            ids[(u64)t * top_k + j] = chosen[j];
            weights[(u64)t * top_k + j] = chosen_p[j] / total;
        }
    }
}

// Pairs per expert (counts must be zeroed first).
extern "C" __global__ void moe_count(const int* ids, int pairs, int* counts) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p < pairs) atomicAdd(&counts[ids[p]], 1);
}

// Exclusive prefix sum of counts into offsets[0..=experts] (one block; experts <= 1024), and
// a copy into `cursor` for the scatter.
extern "C" __global__ void moe_offsets(const int* counts, int experts, int* offsets, int* cursor) {
    __shared__ int buf[1024];
    int e = threadIdx.x;
    buf[e] = (e < experts) ? counts[e] : 0;
    __syncthreads();
    for (int step = 1; step < 1024; step <<= 1) {
        int v = (e >= step) ? buf[e - step] : 0;
        __syncthreads();
        buf[e] += v;
        __syncthreads();
    }
    if (e < experts) {
        int start = buf[e] - counts[e];
        offsets[e] = start;
        cursor[e] = start;
    }
    if (e == experts - 1) offsets[experts] = buf[e];
}

// Pair p (token p / top_k) gets a row in its expert's range; its token's row is gathered there.
// The order within an expert is whatever the atomics give: each row is computed independently,
// so the result does not depend on it.
extern "C" __global__ void moe_scatter(const int* ids, int pairs, int top_k, const float* x,
                                       int hidden, int* cursor, int* pair_row,
                                       float* x_sorted) {
    int p = blockIdx.x;
    __shared__ int row;
    if (threadIdx.x == 0) {
        row = atomicAdd(&cursor[ids[p]], 1);
        pair_row[p] = row;
    }
    __syncthreads();
    const float* src = x + (u64)(p / top_k) * hidden;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) x_sorted[(u64)row * hidden + c] = src[c];
}

// act[r, :] = silu(gate_up[r, :width]) * gate_up[r, width:].
extern "C" __global__ void swiglu(const float* gate_up, u64 rows, int width, float* act) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * width) return;
    u64 r = i / width;
    int c = (int)(i % width);
    float g = gate_up[r * 2 * width + c], u = gate_up[r * 2 * width + width + c];
    act[i] = g / (1.0f + __expf(-g)) * u;
}

// out[token, :] += sum over its k pairs of weight * y[row(pair), :]; pair_row is the identity
// for the per-item path. Separate multiply and add, in expert-id order, as the CPU sums.
extern "C" __global__ void moe_combine(const float* y, const int* pair_row, const float* weights,
                                       int top_k, int hidden, float* out) {
    int t = blockIdx.x;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j < top_k; ++j) {
            int p = t * top_k + j;
            s = __fadd_rn(s, __fmul_rn(weights[p], y[(u64)pair_row[p] * hidden + c]));
        }
        out[(u64)t * hidden + c] += s;
    }
}
