// The rotary embedding kernel, launched from rotary.cc. One block per token: its threads first
// compute cos/sin of the token's rotary_dim / 2 angles into shared memory (the angle in double,
// reduced to [-pi, pi] before a float sincos, so large positions keep their precision), then
// rotate every query and key head of the token in place, one 16-byte access per step when the
// layout allows it.
#include "gpu/kernels/internal/device_helpers.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels::internal {
namespace {

inline constexpr int kMaxRotaryThreads = 256;
inline constexpr double kTwoPi = 6.283185307179586476925;
inline constexpr double kInverseTwoPi = 0.159154943091895335768;

template <typename T>
struct RotaryParams {
  const int32_t* positions;
  T* query;
  T* key;
  int num_heads;
  int num_kv_heads;
  int head_dim;
  int half_rotary;  // rotary_dim / 2: the number of frequencies
  int64_t query_stride;
  int64_t key_stride;
  double inverse_frequencies[kMaxRotaryDim / 2];
};

template <typename T, int kWidth, bool kInterleaved>
__global__ void RotaryKernel(const __grid_constant__ RotaryParams<T> p) {
  extern __shared__ float cos_sin[];  // cos[half_rotary] then sin[half_rotary]
  float* cos_table = cos_sin;
  float* sin_table = cos_sin + p.half_rotary;
  const int64_t token = blockIdx.x;
  const double position = p.positions[token];
  for (int i = threadIdx.x; i < p.half_rotary; i += blockDim.x) {
    const double angle = position * p.inverse_frequencies[i];
    const double turns = rint(angle * kInverseTwoPi);
    const float reduced = static_cast<float>(fma(-turns, kTwoPi, angle));
    sincosf(reduced, &sin_table[i], &cos_table[i]);
  }
  __syncthreads();

  // NeoX: chunk c rotates elements [cW, cW + W) against [half + cW, half + cW + W).
  // GPT-J: chunk c rotates the W / 2 adjacent pairs in elements [cW, cW + W).
  const int chunks_per_head = (kInterleaved ? 2 * p.half_rotary : p.half_rotary) / kWidth;
  const int heads = p.num_heads + p.num_kv_heads;
  for (int work = threadIdx.x; work < heads * chunks_per_head; work += blockDim.x) {
    const int head = work / chunks_per_head;
    const int chunk = work - head * chunks_per_head;
    T* base = head < p.num_heads
                  ? p.query + token * p.query_stride + static_cast<int64_t>(head) * p.head_dim
                  : p.key + token * p.key_stride +
                        static_cast<int64_t>(head - p.num_heads) * p.head_dim;
    if constexpr (kInterleaved) {
      float x[kWidth];
      LoadFloats<kWidth>(base + chunk * kWidth, x);
#pragma unroll
      for (int j = 0; j < kWidth; j += 2) {
        const int i = (chunk * kWidth + j) / 2;
        const float c = cos_table[i];
        const float s = sin_table[i];
        const float even = x[j];
        const float odd = x[j + 1];
        x[j] = even * c - odd * s;
        x[j + 1] = odd * c + even * s;
      }
      StoreFloats<kWidth>(x, base + chunk * kWidth);
    } else {
      float first[kWidth];
      float second[kWidth];
      LoadFloats<kWidth>(base + chunk * kWidth, first);
      LoadFloats<kWidth>(base + p.half_rotary + chunk * kWidth, second);
#pragma unroll
      for (int j = 0; j < kWidth; ++j) {
        const int i = chunk * kWidth + j;
        const float c = cos_table[i];
        const float s = sin_table[i];
        const float a = first[j];
        const float b = second[j];
        first[j] = a * c - b * s;
        second[j] = b * c + a * s;
      }
      StoreFloats<kWidth>(first, base + chunk * kWidth);
      StoreFloats<kWidth>(second, base + p.half_rotary + chunk * kWidth);
    }
  }
}

template <typename T, int kWidth, bool kInterleaved>
cudaError_t LaunchForWidth(const RotaryParams<T>& p, int64_t num_tokens, cudaStream_t stream) {
  const int chunks_per_head = (kInterleaved ? 2 * p.half_rotary : p.half_rotary) / kWidth;
  const int work = (p.num_heads + p.num_kv_heads) * chunks_per_head;
  const int threads = work >= kMaxRotaryThreads
                          ? kMaxRotaryThreads
                          : (work + kWarpSize - 1) / kWarpSize * kWarpSize;
  const size_t shared_bytes = 2 * p.half_rotary * sizeof(float);
  RotaryKernel<T, kWidth, kInterleaved>
      <<<static_cast<unsigned>(num_tokens), threads, shared_bytes, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchTyped(const RotaryLaunch& args, cudaStream_t stream) {
  RotaryParams<T> p;
  p.positions = args.positions;
  p.query = static_cast<T*>(args.query);
  p.key = static_cast<T*>(args.key);
  p.num_heads = static_cast<int>(args.num_heads);
  p.num_kv_heads = static_cast<int>(args.num_kv_heads);
  p.head_dim = static_cast<int>(args.head_dim);
  p.half_rotary = static_cast<int>(args.rotary_dim / 2);
  p.query_stride = args.query_stride;
  p.key_stride = args.key_stride;
  for (int i = 0; i < kMaxRotaryDim / 2; ++i) {
    p.inverse_frequencies[i] = args.inverse_frequencies[i];
  }
  constexpr int kVector = VectorWidth<T>;
  // Every 16-byte access must start on a 16-byte boundary: the bases, each token's row, each
  // head, and (NeoX) the second half.
  const bool aligned = IsAligned(p.query) && IsAligned(p.key) && p.query_stride % kVector == 0 &&
                       p.key_stride % kVector == 0 && p.head_dim % kVector == 0;
  if (args.interleaved) {
    if (aligned && args.rotary_dim % kVector == 0) {
      return LaunchForWidth<T, kVector, true>(p, args.num_tokens, stream);
    }
    return LaunchForWidth<T, 2, true>(p, args.num_tokens, stream);
  }
  if (aligned && p.half_rotary % kVector == 0) {
    return LaunchForWidth<T, kVector, false>(p, args.num_tokens, stream);
  }
  return LaunchForWidth<T, 1, false>(p, args.num_tokens, stream);
}

}  // namespace

cudaError_t LaunchRotary(ElementType type, const RotaryLaunch& args, cudaStream_t stream) {
  switch (type) {
    case ElementType::kFloat32: return LaunchTyped<float>(args, stream);
    case ElementType::kFloat16: return LaunchTyped<__half>(args, stream);
    case ElementType::kBFloat16: return LaunchTyped<__nv_bfloat16>(args, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace troupe::gpu::kernels::internal
