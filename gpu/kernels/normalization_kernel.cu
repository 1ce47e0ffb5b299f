// LayerNorm and RMSNorm kernels, plain and fused with a residual add; launched from
// normalization.cc.
//
// Rows up to 4096 vector accesses per row (32768 fp16/bf16 or 16384 fp32 columns; 4096 columns
// when the row cannot be read in 16-byte pieces) stay in registers: one read of each input and
// one write of each output. Rows of at most 64 accesses get one warp each (4 rows per block, no
// __syncthreads); longer rows get a block of up to 512 threads. Longer rows still fall back to a
// block that reads the row three times (the repeats mostly hit L1/L2).
//
// A row's block spends most of its life waiting: for its loads, then for its reduction. So a
// register-resident row takes one block-wide reduction with one __syncthreads: RMSNorm reduces
// the sum of squares; LayerNorm the sums of x and x^2, which give mean and variance together
// (the two dependent reductions of the two-pass formula cost LayerNorm about 10%). Rows whose
// mean is large against their deviation fall back to the two-pass formula (see
// LayerNormMoments).
#include "gpu/kernels/internal/device_helpers.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels::internal {
namespace {

inline constexpr int kMaxNormThreads = 512;
inline constexpr int kWarpRowsPerBlock = 4;
inline constexpr int kMaxPacksPerThread = 8;

template <typename T>
struct NormParams {
  const T* input;
  const T* bias;
  const T* residual;
  const T* gamma;
  const T* beta;
  T* sum_output;
  T* output;
  int64_t rows;
  int cols;
  float epsilon;
};

// Sums is LayerNorm's pair of running sums: of x and of x^2.
struct Sums {
  float x = 0.0f;
  float y = 0.0f;
};

using internal::WarpSum;  // the float overload, which this one would otherwise hide

__device__ __forceinline__ Sums WarpSum(Sums sums) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    sums.x += __shfl_xor_sync(kFullWarpMask, sums.x, offset);
    sums.y += __shfl_xor_sync(kFullWarpMask, sums.y, offset);
  }
  return sums;
}

// RowSum reduces over the threads of one row: a warp, or the whole block. In a block every warp
// re-reduces the per-warp partials itself, so one __syncthreads suffices (BlockSum needs two so
// that its buffer can be reused); `shared` must not be written again by this block.
template <bool kWarpPerRow, typename Value>
__device__ __forceinline__ Value RowSum(Value value, Value* shared) {
  value = WarpSum(value);
  if constexpr (kWarpPerRow) {
    return value;
  } else {
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    if (lane == 0) shared[warp] = value;
    __syncthreads();
    const int warps = blockDim.x / kWarpSize;
    return WarpSum(lane < warps ? shared[lane] : Value{});
  }
}

// LoadRowPack reads one access of the row's input, or for the residual form computes
// input + bias + residual, rounds it to T, stores it to sum_output and returns it.
template <typename T, int kWidth, bool kResidual>
__device__ __forceinline__ void LoadRowPack(const NormParams<T>& p, int64_t offset, int column,
                                            float (&v)[kWidth]) {
  LoadFloats<kWidth>(p.input + offset, v);
  if constexpr (kResidual) {
    float r[kWidth];
    LoadFloats<kWidth>(p.residual + offset, r);
    float b[kWidth] = {};
    if (p.bias != nullptr) LoadFloats<kWidth>(p.bias + column, b);
#pragma unroll
    for (int i = 0; i < kWidth; ++i) v[i] = RoundTo<T>(v[i] + b[i] + r[i]);
    StoreFloats<kWidth>(v, p.sum_output + offset);
  }
}

template <typename T, int kWidth, bool kLayerNorm>
__device__ __forceinline__ void StoreNormalized(const NormParams<T>& p, int64_t offset, int column,
                                                const float (&v)[kWidth], float mean,
                                                float scale) {
  float g[kWidth];
  LoadFloats<kWidth>(p.gamma + column, g);
  float out[kWidth];
  if constexpr (kLayerNorm) {
    float b[kWidth];
    LoadFloats<kWidth>(p.beta + column, b);
#pragma unroll
    for (int i = 0; i < kWidth; ++i) out[i] = (v[i] - mean) * scale * g[i] + b[i];
  } else {
#pragma unroll
    for (int i = 0; i < kWidth; ++i) out[i] = v[i] * scale * g[i];
  }
  StoreFloats<kWidth>(out, p.output + offset);
}

struct RowMoments {
  float mean;
  float variance;  // biased, as torch.nn.LayerNorm
};

// kMaxSpread bounds mean^2 / variance for the one-reduction moments: the variance
// E[x^2] - E[x]^2 then loses at most a factor 1 + kMaxSpread to cancellation (about 1e-6
// relative). Rows beyond it (hidden states centred far from zero) take two more reductions, the
// plain two-pass formula. The test is the same in every thread of the row. (Summing x - s for a
// shift s read from the row, to keep such rows on the fast path, cost 1-2% on every row.)
inline constexpr float kMaxSpread = 8.0f;

// LayerNormMoments returns the mean and variance of the row whose accesses t + k * threads
// (those below `packs`) this thread holds in v.
template <bool kWarpPerRow, int kPacks, int kWidth>
__device__ __forceinline__ RowMoments LayerNormMoments(const float (&v)[kPacks][kWidth],
                                                       int packs, int threads,
                                                       float inverse_cols) {
  const auto holds = [&](int k) { return static_cast<int>(threadIdx.x) + k * threads < packs; };
  __shared__ Sums shared_sums[kWarpSize];
  Sums sums;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    if (holds(k)) {
#pragma unroll
      for (int i = 0; i < kWidth; ++i) {
        sums.x += v[k][i];
        sums.y = fmaf(v[k][i], v[k][i], sums.y);
      }
    }
  }
  sums = RowSum<kWarpPerRow>(sums, shared_sums);
  const float one_pass_mean = sums.x * inverse_cols;
  const float variance = fmaxf(fmaf(-one_pass_mean, one_pass_mean, sums.y * inverse_cols), 0.0f);
  if (!(one_pass_mean * one_pass_mean > kMaxSpread * variance)) {
    return RowMoments{one_pass_mean, variance};
  }
  __shared__ float shared_sum[kWarpSize];
  __shared__ float shared_squares[kWarpSize];
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
#pragma unroll
    for (int i = 0; i < kWidth; ++i) sum += v[k][i];  // accesses it does not hold are 0
  }
  const float mean = RowSum<kWarpPerRow>(sum, shared_sum) * inverse_cols;
  float squares = 0.0f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    if (holds(k)) {
#pragma unroll
      for (int i = 0; i < kWidth; ++i) squares += (v[k][i] - mean) * (v[k][i] - mean);
    }
  }
  return RowMoments{mean, RowSum<kWarpPerRow>(squares, shared_squares) * inverse_cols};
}

// NormRegistersKernel keeps its row in registers: thread t of a row holds accesses t,
// t + threads, ..., t + (kPacks - 1) * threads, each kWidth elements wide (coalesced per access).
template <typename T, int kWidth, int kPacks, bool kWarpPerRow, bool kLayerNorm, bool kResidual>
__global__ void __launch_bounds__(kMaxNormThreads)
    NormRegistersKernel(const NormParams<T> p) {
  const int64_t row =
      kWarpPerRow ? static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y : blockIdx.x;
  if (kWarpPerRow && row >= p.rows) return;  // the whole warp leaves together
  const int packs = p.cols / kWidth;
  const int threads = blockDim.x;
  const int64_t row_offset = row * p.cols;

  float v[kPacks][kWidth];
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int pack = threadIdx.x + k * threads;
    if (pack < packs) {
      LoadRowPack<T, kWidth, kResidual>(p, row_offset + pack * kWidth, pack * kWidth, v[k]);
    } else {
#pragma unroll
      for (int i = 0; i < kWidth; ++i) v[k][i] = 0.0f;
    }
  }

  const float inverse_cols = 1.0f / static_cast<float>(p.cols);
  float mean = 0.0f;
  float moment = 0.0f;  // variance (LayerNorm) or mean square (RMSNorm)
  if constexpr (kLayerNorm) {
    const RowMoments moments = LayerNormMoments<kWarpPerRow>(v, packs, threads, inverse_cols);
    mean = moments.mean;
    moment = moments.variance;
  } else {
    __shared__ float shared[kWarpSize];
    float squares = 0.0f;
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
#pragma unroll
      for (int i = 0; i < kWidth; ++i) squares += v[k][i] * v[k][i];
    }
    moment = RowSum<kWarpPerRow>(squares, shared) * inverse_cols;
  }
  const float scale = rsqrtf(moment + p.epsilon);

#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int pack = threadIdx.x + k * threads;
    if (pack < packs) {
      StoreNormalized<T, kWidth, kLayerNorm>(p, row_offset + pack * kWidth, pack * kWidth, v[k],
                                             mean, scale);
    }
  }
}

// NormLongRowKernel handles rows too long for registers: a first pass computes (and in the
// residual form writes) the row and its sum, a second the centred sum of squares (LayerNorm), a
// third the output. Later passes re-read what this same thread wrote or read.
template <typename T, int kWidth, bool kLayerNorm, bool kResidual>
__global__ void __launch_bounds__(kMaxNormThreads) NormLongRowKernel(const NormParams<T> p) {
  __shared__ float shared[kWarpSize];
  const int64_t row_offset = static_cast<int64_t>(blockIdx.x) * p.cols;
  const int packs = p.cols / kWidth;
  const T* source = (kResidual ? p.sum_output : p.input) + row_offset;

  float sum = 0.0f;
  float squares = 0.0f;
  for (int pack = threadIdx.x; pack < packs; pack += blockDim.x) {
    float v[kWidth];
    LoadRowPack<T, kWidth, kResidual>(p, row_offset + pack * kWidth, pack * kWidth, v);
#pragma unroll
    for (int i = 0; i < kWidth; ++i) {
      sum += v[i];
      squares += v[i] * v[i];
    }
  }
  const float inverse_cols = 1.0f / static_cast<float>(p.cols);
  float mean = 0.0f;
  float moment = 0.0f;
  if constexpr (kLayerNorm) {
    mean = BlockSum(sum, shared) * inverse_cols;
    float centred = 0.0f;
    for (int pack = threadIdx.x; pack < packs; pack += blockDim.x) {
      float v[kWidth];
      LoadFloats<kWidth>(source + pack * kWidth, v);
#pragma unroll
      for (int i = 0; i < kWidth; ++i) centred += (v[i] - mean) * (v[i] - mean);
    }
    moment = BlockSum(centred, shared) * inverse_cols;
  } else {
    moment = BlockSum(squares, shared) * inverse_cols;
  }
  const float scale = rsqrtf(moment + p.epsilon);
  for (int pack = threadIdx.x; pack < packs; pack += blockDim.x) {
    float v[kWidth];
    LoadFloats<kWidth>(source + pack * kWidth, v);
    StoreNormalized<T, kWidth, kLayerNorm>(p, row_offset + pack * kWidth, pack * kWidth, v, mean,
                                           scale);
  }
}

int RoundUpToWarp(int threads) { return (threads + kWarpSize - 1) / kWarpSize * kWarpSize; }

template <typename T, int kWidth, int kPacks, bool kLayerNorm, bool kResidual>
cudaError_t LaunchWarpRows(const NormParams<T>& p, cudaStream_t stream) {
  const dim3 block(kWarpSize, kWarpRowsPerBlock);
  const int64_t blocks = (p.rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock;
  NormRegistersKernel<T, kWidth, kPacks, true, kLayerNorm, kResidual>
      <<<static_cast<unsigned>(blocks), block, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, int kWidth, int kPacks, bool kLayerNorm, bool kResidual>
cudaError_t LaunchBlockRows(const NormParams<T>& p, int packs, cudaStream_t stream) {
  const int threads = RoundUpToWarp((packs + kPacks - 1) / kPacks);
  NormRegistersKernel<T, kWidth, kPacks, false, kLayerNorm, kResidual>
      <<<static_cast<unsigned>(p.rows), threads, 0, stream>>>(p);
  return cudaGetLastError();
}

// Picks the smallest number of accesses per thread that fits the row in at most 512 threads.
template <typename T, int kWidth, bool kLayerNorm, bool kResidual>
cudaError_t LaunchForWidth(const NormParams<T>& p, cudaStream_t stream) {
  const int packs = p.cols / kWidth;
  if (packs <= kWarpSize) return LaunchWarpRows<T, kWidth, 1, kLayerNorm, kResidual>(p, stream);
  if (packs <= 2 * kWarpSize) {
    return LaunchWarpRows<T, kWidth, 2, kLayerNorm, kResidual>(p, stream);
  }
  if (packs <= kMaxNormThreads) {
    return LaunchBlockRows<T, kWidth, 1, kLayerNorm, kResidual>(p, packs, stream);
  }
  if (packs <= 2 * kMaxNormThreads) {
    return LaunchBlockRows<T, kWidth, 2, kLayerNorm, kResidual>(p, packs, stream);
  }
  if (packs <= 4 * kMaxNormThreads) {
    return LaunchBlockRows<T, kWidth, 4, kLayerNorm, kResidual>(p, packs, stream);
  }
  if (packs <= kMaxPacksPerThread * kMaxNormThreads) {
    return LaunchBlockRows<T, kWidth, kMaxPacksPerThread, kLayerNorm, kResidual>(p, packs,
                                                                                  stream);
  }
  NormLongRowKernel<T, kWidth, kLayerNorm, kResidual>
      <<<static_cast<unsigned>(p.rows), kMaxNormThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, bool kLayerNorm, bool kResidual>
cudaError_t LaunchForType(const NormParams<T>& p, cudaStream_t stream) {
  constexpr int kVector = VectorWidth<T>;
  const bool vector = p.cols % kVector == 0 && IsAligned(p.input) && IsAligned(p.bias) &&
                      IsAligned(p.residual) && IsAligned(p.gamma) && IsAligned(p.beta) &&
                      IsAligned(p.sum_output) && IsAligned(p.output);
  if (vector) return LaunchForWidth<T, kVector, kLayerNorm, kResidual>(p, stream);
  return LaunchForWidth<T, 1, kLayerNorm, kResidual>(p, stream);
}

template <typename T>
cudaError_t LaunchTyped(const NormLaunch& args, cudaStream_t stream) {
  const NormParams<T> p{static_cast<const T*>(args.input),    static_cast<const T*>(args.bias),
                        static_cast<const T*>(args.residual), static_cast<const T*>(args.gamma),
                        static_cast<const T*>(args.beta),     static_cast<T*>(args.sum_output),
                        static_cast<T*>(args.output),         args.rows,
                        static_cast<int>(args.cols),          args.epsilon};
  const bool layer_norm = args.kind == NormKind::kLayerNorm;
  const bool residual = args.residual != nullptr;
  if (layer_norm && residual) return LaunchForType<T, true, true>(p, stream);
  if (layer_norm) return LaunchForType<T, true, false>(p, stream);
  if (residual) return LaunchForType<T, false, true>(p, stream);
  return LaunchForType<T, false, false>(p, stream);
}

}  // namespace

cudaError_t LaunchNorm(ElementType type, const NormLaunch& args, cudaStream_t stream) {
  switch (type) {
    case ElementType::kFloat32: return LaunchTyped<float>(args, stream);
    case ElementType::kFloat16: return LaunchTyped<__half>(args, stream);
    case ElementType::kBFloat16: return LaunchTyped<__nv_bfloat16>(args, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace troupe::gpu::kernels::internal
