// Seeded weights generated on the device: the ChaCha8 word stream of rand_chacha's ChaCha8Rng
// (key from seed_from_u64, stream 0), computed per 64-byte block from the block counter, so
// every tensor gets the same values the CPU engine draws sequentially for the same seed.

__device__ __forceinline__ u32 rotl(u32 v, int c) { return (v << c) | (v >> (32 - c)); }

#define QR(a, b, c, d)                                                                         \
    a += b; d ^= a; d = rotl(d, 16);                                                           \
    c += d; b ^= c; b = rotl(b, 12);                                                           \
    a += b; d ^= a; d = rotl(d, 8);                                                            \
    c += d; b ^= c; b = rotl(b, 7);

// One ChaCha8 block (16 words) for `counter`.
__device__ void chacha8_block(const u32* key, u64 counter, u32* out) {
    u32 x[16], s[16];
    s[0] = 0x61707865u; s[1] = 0x3320646eu; s[2] = 0x79622d32u; s[3] = 0x6b206574u;
    for (int i = 0; i < 8; ++i) s[4 + i] = key[i];
    s[12] = (u32)counter; s[13] = (u32)(counter >> 32); s[14] = 0; s[15] = 0;
    for (int i = 0; i < 16; ++i) x[i] = s[i];
    for (int r = 0; r < 4; ++r) {
        QR(x[0], x[4], x[8], x[12]) QR(x[1], x[5], x[9], x[13])
        QR(x[2], x[6], x[10], x[14]) QR(x[3], x[7], x[11], x[15])
        QR(x[0], x[5], x[10], x[15]) QR(x[1], x[6], x[11], x[12])
        QR(x[2], x[7], x[8], x[13]) QR(x[3], x[4], x[9], x[14])
    }
    for (int i = 0; i < 16; ++i) out[i] = x[i] + s[i];
}

// Words [first, first + n) of the stream into `out` (one thread per ChaCha block touched).
extern "C" __global__ void chacha8_words(const u32* key, u64 first, u64 n, u32* out) {
    u64 b = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    u64 first_block = first >> 4;
    u64 last_block = (first + n - 1) >> 4;
    if (n == 0 || first_block + b > last_block) return;
    u32 words[16];
    chacha8_block(key, first_block + b, words);
    for (int i = 0; i < 16; ++i) {
        u64 w = ((first_block + b) << 4) + i;
        if (w >= first && w < first + n) out[w - first] = words[i];
    }
}

// Per-group scales and offsets from the stream words the CPU draws for them: scale =
// base * (0.75 + 0.5 * unit01(word)), zero = 7 + (word & 1), offset = -scale * zero.
extern "C" __global__ void int4_scales(const u32* scale_words, const u32* zero_words, u64 groups,
                                       float base, float* scales, float* offsets) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= groups) return;
    float unit = (float)(scale_words[i] >> 8) / 16777216.0f;
    float s = base * (0.75f + 0.5f * unit);
    float z = 7.0f + (float)(zero_words[i] & 1u);
    scales[i] = s;
    offsets[i] = -s * z;
}

// Uniform values in [center - scale, center + scale) from stream words (f32_vec: center 0;
// gains: center 1). `__fmul_rn` keeps the CPU's separate multiply and add (a fused
// multiply-add would round once and differ in the last bit). `words` may alias `out`.
extern "C" __global__ void uniform_f32(const u32* words, u64 n, float center, float scale,
                                       float* out) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float unit = (float)(words[i] >> 8) / 16777216.0f;
    out[i] = center + __fmul_rn(unit * 2.0f - 1.0f, scale);
}

// The embedding and the LM head: words [first, first + n) of the stream straight to fp16 values
// uniform in [-scale, scale) (the CPU's f16_vec: `__fmul_rn` as in uniform_f32, then round to
// nearest even), one thread per ChaCha block touched, so no f32 or word copy of a
// vocab x hidden tensor ever exists on the device (4.6 GiB for Qwen2.5-72B).
extern "C" __global__ void uniform_f16(const u32* key, u64 first, u64 n, float scale,
                                       f16raw* out) {
    u64 b = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    u64 first_block = first >> 4;
    u64 last_block = (first + n - 1) >> 4;
    if (n == 0 || first_block + b > last_block) return;
    u32 words[16];
    chacha8_block(key, first_block + b, words);
    for (int i = 0; i < 16; ++i) {
        u64 w = ((first_block + b) << 4) + i;
        if (w >= first && w < first + n) {
            float unit = (float)(words[i] >> 8) / 16777216.0f;
            out[w - first] = f2h(__fmul_rn(unit * 2.0f - 1.0f, scale));
        }
    }
}
