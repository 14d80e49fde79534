// Embedding gather (fp16 table; an f32 gather for the rows that need logits), RMSNorm, residual add, bias
// add and the fp16 rounding of stored activations (f32 arithmetic, one row per block).

// x[r, :] = table[ids[r], :] over f32 rows (the gather of the rows that need logits).
extern "C" __global__ void embed(const u32* ids, const float* table, int hidden, float* x) {
    int r = blockIdx.x;
    const float* src = table + (u64)ids[r] * hidden;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) x[(u64)r * hidden + c] = src[c];
}

// x[r, :] = table[ids[r], :] from the fp16 embedding table (values widened to f32 exactly).
extern "C" __global__ void embed_f16(const u32* ids, const f16raw* table, int hidden, float* x) {
    int r = blockIdx.x;
    const f16raw* src = table + (u64)ids[r] * hidden;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) x[(u64)r * hidden + c] = h2f(src[c]);
}

// out[r, :] = x[r, :] / rms(x[r, :]) * gain (out may alias x); 1 / sqrtf (IEEE) rather than
// rsqrtf, as the CPU computes it.
extern "C" __global__ void rms_norm(const float* x, const float* gain, int width, float eps,
                                    float* out) {
    __shared__ float scratch[32];
    const float* row = x + (u64)blockIdx.x * width;
    float* dst = out + (u64)blockIdx.x * width;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < width; c += blockDim.x) ss += row[c] * row[c];
    ss = block_sum(ss, scratch);
    float inv = 1.0f / sqrtf(ss / (float)width + eps);
    for (int c = threadIdx.x; c < width; c += blockDim.x) dst[c] = row[c] * inv * gain[c];
}

// x += y, elementwise over n values.
extern "C" __global__ void add_inplace(float* x, const float* y, u64 n) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

// x[r, :] += bias over `rows` rows of `width` (qwen2's QKV bias).
extern "C" __global__ void add_bias_rows(float* x, const float* bias, u64 rows, int width) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * width) x[i] += bias[i % width];
}

// Rounds n values to fp16 and back (dtype fp16 stores activations between layers in f16).
extern "C" __global__ void round_f16(float* x, u64 n) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = h2f(f2h(x[i]));
}
