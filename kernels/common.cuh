// Shared helpers, prepended to every kernel file before NVRTC compiles it (NVRTC has no include
// path to the CUDA toolkit here, so nothing from the toolkit headers is used: fp16 conversions
// are single PTX instructions).
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned short f16raw;

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

__device__ __forceinline__ float h2f(f16raw h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ f16raw f2h(float f) {
    f16raw h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// Sum over a warp.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Max over a warp.
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of at most 1024 threads (blockDim.x a multiple of 32); `scratch` holds 32
// floats. Every thread gets the total.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    int warps = (blockDim.x + 31) >> 5;
    v = (lane < warps) ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

// Dequantised int4 weight: packed rows of 32-value blocks (byte i: value i low nibble, value
// 16+i high nibble), per-group scale and offset (offset = -scale * zero), as on the CPU.
__device__ __forceinline__ float int4_at(const unsigned char* row_packed, const float* row_scales,
                                         const float* row_offsets, int col, int group) {
    int block = col >> 5, within = col & 31;
    unsigned char byte = row_packed[block * 16 + (within & 15)];
    int q = within < 16 ? (byte & 15) : (byte >> 4);
    int g = col / group;
    return row_scales[g] * (float)q + row_offsets[g];
}
