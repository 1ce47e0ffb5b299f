// The sampling kernel, launched from sampling.cc: one block of 512 threads per row of logits.
//
// Greedy rows take one pass (argmax). Sampled rows draw with the Gumbel-max trick: the token is
// argmax_i (logit_i + T * g_i) over the kept tokens, with g_i = -log(-log(u_i)) standard Gumbel
// noise and u_i from Philox keyed by the row's seed, counter (i / 4, offset). That is an exact
// draw from softmax(logits / T) restricted to the kept tokens, in one pass, with no sort and no
// prefix sum, and u_i depends only on (seed, offset, i).
//
// The per-token arithmetic (keys, masses, Gumbel scores) is internal/draw_math.h, shared with
// the host sampler: only correctly rounded operations, no __expf/logf, so that SampleOnHost
// reproduces every draw bit for bit.
//
// Top-k and top-p keep the tokens whose logit is at least a threshold, found by radix select on
// the logits' order-preserving 32-bit keys, 8 bits per pass (4 passes): for top-k, the k-th
// largest key by count; for top-p, the largest key whose tokens hold at least top_p of the
// probability mass (of the top-k tokens, when both are set). Masses are summed in 32.32 fixed
// point, so every sum is exact and the threshold, like the rest, is deterministic.
#include <cstdint>

#include "gpu/kernels/internal/device_helpers.h"
#include "gpu/sampling/internal/draw_math.h"
#include "gpu/sampling/internal/launch.h"
#include "gpu/sampling/internal/philox.h"

namespace troupe::gpu::sampling::internal {
namespace {

using kernels::internal::Elements;
using kernels::internal::IsAligned;
using kernels::internal::kFullWarpMask;
using kernels::internal::kWarpSize;
using kernels::internal::ToFloat;
using kernels::internal::VectorWidth;

// 512 threads leave each up to 128 registers: the unrolled passes need more than 64.
inline constexpr int kThreads = 512;
inline constexpr int kWarps = kThreads / kWarpSize;
// Chunks a thread loads before it uses the first: more bytes in flight for one block.
inline constexpr int kUnroll = 4;
inline constexpr int kRadixBits = 8;
inline constexpr int kBins = 1 << kRadixBits;
inline constexpr int kRadixPasses = 32 / kRadixBits;
inline constexpr int kBinsPerLane = kBins / kWarpSize;
inline constexpr int32_t kNoToken = 0x7fffffff;

struct SampleBatch {
  int64_t first_row;
  RowParams rows[kMaxRowsPerLaunch];
};

struct SampleShared {
  unsigned long long histogram[kBins];
  unsigned long long remaining;
  uint32_t selected_bin;
  float best_values[kWarpSize];  // one per warp; BlockMax wants kWarpSize
  int32_t best_tokens[kWarpSize];
};

// RowReader walks one row of logits: each thread visits its chunks of kChunk consecutive
// logits (chunk c of the row belongs to thread c % blockDim.x) in increasing order. ForEachChunk
// calls visit(first_index, values, valid); ForEachValue calls visit(index, value) for each real
// logit. NaN logits read as -inf; on the element path the values past the end of the row read
// as -inf and `valid` counts the real ones. Loops over a chunk are unrolled so that the values
// stay in registers.
template <typename T, int kChunk, bool kVector>
struct RowReader {
  const T* row;
  int64_t vocab;

  template <typename Visit>
  __device__ __forceinline__ void ForEachValue(Visit&& visit) const {
    ForEachChunk([&](int64_t first, const float (&v)[kChunk], int valid) {
#pragma unroll
      for (int i = 0; i < kChunk; ++i) {
        if (i < valid) visit(first + i, v[i]);
      }
    });
  }

  // The loads of kUnroll chunks are issued before the first is used, and kept in their storage
  // type until then (4 registers per 16 bytes), so that many bytes are in flight per thread.
  template <typename Visit>
  __device__ __forceinline__ void ForEachChunk(Visit&& visit) const {
    const int64_t chunks = (vocab + kChunk - 1) / kChunk;
    const int64_t stride = static_cast<int64_t>(blockDim.x) * kUnroll;
    for (int64_t base = threadIdx.x; base < chunks; base += stride) {
      Elements<T, kChunk> raw[kUnroll];
      int valid[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t first = (base + static_cast<int64_t>(u) * blockDim.x) * kChunk;
        valid[u] = 0;
        if (first < vocab) {
          if constexpr (kVector) {
            raw[u] = *reinterpret_cast<const Elements<T, kChunk>*>(row + first);
            valid[u] = kChunk;
          } else {
            const int64_t left = vocab - first;
            valid[u] = left < kChunk ? static_cast<int>(left) : kChunk;
#pragma unroll
            for (int i = 0; i < kChunk; ++i) {
              if (i < valid[u]) raw[u].values[i] = row[first + i];
            }
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (valid[u] == 0) continue;
        float v[kChunk];
#pragma unroll
        for (int i = 0; i < kChunk; ++i) {
          const float value = ToFloat(raw[u].values[i]);
          v[i] = i < valid[u] && !isnan(value) ? value : -INFINITY;
        }
        visit((base + static_cast<int64_t>(u) * blockDim.x) * kChunk, v, valid[u]);
      }
    }
  }
};

// Better orders (value, token) pairs: the higher value, then the lower token.
__device__ __forceinline__ bool Better(float value, int32_t token, float best_value,
                                       int32_t best_token) {
  return value > best_value || (value == best_value && token < best_token);
}

// BlockArgmax returns the block's best (value, token) pair's token to every thread (kNoToken
// when no thread had one).
__device__ __forceinline__ int32_t BlockArgmax(float value, int32_t token, SampleShared& shared) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const float other_value = __shfl_xor_sync(kFullWarpMask, value, offset);
    const int32_t other_token = __shfl_xor_sync(kFullWarpMask, token, offset);
    if (Better(other_value, other_token, value, token)) {
      value = other_value;
      token = other_token;
    }
  }
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  if (lane == 0) {
    shared.best_values[warp] = value;
    shared.best_tokens[warp] = token;
  }
  __syncthreads();
  value = lane < kWarps ? shared.best_values[lane] : -INFINITY;
  token = lane < kWarps ? shared.best_tokens[lane] : kNoToken;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const float other_value = __shfl_xor_sync(kFullWarpMask, value, offset);
    const int32_t other_token = __shfl_xor_sync(kFullWarpMask, token, offset);
    if (Better(other_value, other_token, value, token)) {
      value = other_value;
      token = other_token;
    }
  }
  __syncthreads();
  return token;
}

// Argmax: the lowest index among the largest logits (0 if every logit is -inf or NaN).
template <typename Reader>
__device__ int32_t Argmax(const Reader& reader, SampleShared& shared) {
  float best = -INFINITY;
  int32_t best_token = kNoToken;
  reader.ForEachValue([&](int64_t index, float value) {
    // Strictly greater: a thread visits its tokens in increasing order, so ties keep the lower
    // index.
    if (value > best) {
      best = value;
      best_token = static_cast<int32_t>(index);
    }
  });
  const int32_t token = BlockArgmax(best, best_token, shared);
  return token == kNoToken ? 0 : token;
}

template <typename Reader>
__device__ float RowMax(const Reader& reader, SampleShared& shared) {
  float best = -INFINITY;
  reader.ForEachValue([&](int64_t, float value) { best = fmaxf(best, value); });
  return kernels::internal::BlockMax(best, shared.best_values);
}

// SelectBin (warp 0) finds the highest bin b such that the histogram's weight in bins >= b
// reaches `target`, and stores b and the target left for the next digit (target minus the
// weight of the bins above b). With `fraction` > 0 the target is first set to
// ceil(fraction * total weight) (top-p's share of the mass). If the bins hold less than the
// target it picks bin 0 (keep everything that is left).
__device__ void SelectBin(SampleShared& shared, unsigned long long target, float fraction) {
  const int lane = threadIdx.x;
  unsigned long long weights[kBinsPerLane];
  unsigned long long lane_total = 0;
#pragma unroll
  for (int j = 0; j < kBinsPerLane; ++j) {
    weights[j] = shared.histogram[kBins - 1 - (lane * kBinsPerLane + j)];
    lane_total += weights[j];
  }
  // Inclusive scan over lanes: lane l's bins come after (are lower than) lane l-1's.
  unsigned long long inclusive = lane_total;
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const unsigned long long other = __shfl_up_sync(kFullWarpMask, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  if (fraction > 0.0f) {
    const unsigned long long total = __shfl_sync(kFullWarpMask, inclusive, kWarpSize - 1);
    target = static_cast<unsigned long long>(ceil(static_cast<double>(fraction) * total));
    if (target < 1) target = 1;
    if (target > total) target = total;
  }
  const unsigned long long exclusive = inclusive - lane_total;
  const unsigned crossing =
      __ballot_sync(kFullWarpMask, exclusive < target && inclusive >= target);
  if (crossing == 0) {
    if (lane == 0) {
      shared.selected_bin = 0;
      shared.remaining = target;
    }
    return;
  }
  if (lane == __ffs(crossing) - 1) {
    unsigned long long before = exclusive;
#pragma unroll
    for (int j = 0; j < kBinsPerLane; ++j) {
      if (before + weights[j] >= target) {
        shared.selected_bin = kBins - 1 - (lane * kBinsPerLane + j);
        shared.remaining = target - before;
        break;
      }
      before += weights[j];
    }
  }
}

// RadixSelect returns the largest key K such that the tokens with key >= K (among those with
// key >= floor_key) weigh at least the target: `target` tokens (top-k, weight 1 each), or with
// `fraction` > 0 that fraction of the total weight (top-p, weight = fixed-point mass).
template <typename Reader, typename Weight>
__device__ uint32_t RadixSelect(const Reader& reader, uint32_t floor_key,
                                unsigned long long target, float fraction, Weight weight,
                                SampleShared& shared) {
  uint32_t prefix = 0;
  uint32_t prefix_mask = 0;
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    const int shift = 32 - kRadixBits * (pass + 1);
    for (int b = threadIdx.x; b < kBins; b += blockDim.x) shared.histogram[b] = 0;
    __syncthreads();
    // Consecutive tokens of a thread often share a bin (the high bits of nearby logits agree):
    // accumulate runs in a register and add each run with one shared-memory atomic.
    uint32_t run_bin = 0;
    unsigned long long run_weight = 0;
    reader.ForEachValue([&](int64_t, float value) {
      const uint32_t key = OrderedKey(value);
      if (key < floor_key || (key & prefix_mask) != prefix) return;
      const uint32_t bin = (key >> shift) & (kBins - 1);
      if (bin != run_bin) {
        if (run_weight != 0) atomicAdd(&shared.histogram[run_bin], run_weight);
        run_bin = bin;
        run_weight = 0;
      }
      run_weight += weight(value);
    });
    if (run_weight != 0) atomicAdd(&shared.histogram[run_bin], run_weight);
    __syncthreads();
    if (threadIdx.x < kWarpSize) SelectBin(shared, target, pass == 0 ? fraction : 0.0f);
    __syncthreads();
    prefix |= shared.selected_bin << shift;
    prefix_mask |= static_cast<uint32_t>(kBins - 1) << shift;
    // No barrier needed before the next pass: the selection is next written only after the
    // next pass's first barrier, which every thread reaches after reading it.
    target = shared.remaining;
  }
  return prefix;
}

struct CountWeight {
  __device__ __forceinline__ unsigned long long operator()(float) const { return 1; }
};

// MassWeight is exp((logit - max) / T) in 32.32 fixed point: 2^32 for the most likely token.
struct MassWeight {
  float max_logit;
  float inverse_temperature;
  __device__ __forceinline__ unsigned long long operator()(float logit) const {
    return FixedPointMass(logit, max_logit, inverse_temperature);
  }
};

// NoiseBound bounds from above the Gumbel noise GumbelScore computes from `bits`, cheaply:
// g(u) = -log(-log(u)) <= -log(1 - u), because -log(u) >= 1 - u (and the two agree as u -> 1,
// where the winners' noise lies). The margin covers __logf's error (under 4e-6 here) and that
// of GumbelScore's noise (a few 1e-6). A token whose logit + T * bound is at most the best score
// so far cannot win, so skipping its logarithms changes no draw; most tokens are skipped.
__device__ __forceinline__ float NoiseBound(uint32_t bits) {
  constexpr float kMargin = 1e-3f;
  return kMargin - __logf(1.0f - OpenUnitInterval(bits));
}

// GumbelArgmax draws a token among those with key >= floor_key.
template <typename Reader, int kChunk>
__device__ int32_t GumbelArgmax(const Reader& reader, uint32_t floor_key, const RowParams& params,
                                SampleShared& shared) {
  static_assert(kChunk % 4 == 0, "one Philox call covers 4 consecutive tokens");
  const PhiloxKey key{static_cast<uint32_t>(params.seed), static_cast<uint32_t>(params.seed >> 32)};
  const uint32_t offset_low = static_cast<uint32_t>(params.offset);
  const uint32_t offset_high = static_cast<uint32_t>(params.offset >> 32);
  const float temperature = params.temperature;
  const float noise_bound = temperature * kMaxGumbel;
  float best = -INFINITY;
  int32_t best_token = kNoToken;
  reader.ForEachChunk([&](int64_t first, const float (&v)[kChunk], int valid) {
    bool any = false;
#pragma unroll
    for (int i = 0; i < kChunk; ++i) {
      any |= i < valid && OrderedKey(v[i]) >= floor_key && v[i] + noise_bound > best;
    }
    if (!any) return;
#pragma unroll
    for (int group = 0; group < kChunk / 4; ++group) {
      const uint64_t counter = static_cast<uint64_t>(first / 4 + group);
      const Philox4x32 bits = Philox4x32_10(
          {static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), offset_low,
           offset_high},
          key);
      const uint32_t words[4] = {bits.x, bits.y, bits.z, bits.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int i = group * 4 + j;
        if (i >= valid || OrderedKey(v[i]) < floor_key || !(v[i] + noise_bound > best)) continue;
        if (!(v[i] + temperature * NoiseBound(words[j]) > best)) continue;
        const float score = GumbelScore(v[i], temperature, words[j]);
        if (score > best) {
          best = score;
          best_token = static_cast<int32_t>(first + i);
        }
      }
    }
  });
  const int32_t token = BlockArgmax(best, best_token, shared);
  return token == kNoToken ? 0 : token;
}

template <typename T, int kChunk, bool kVector>
__global__ void __launch_bounds__(kThreads, 1)
    SampleKernel(const T* logits, int64_t vocab, int32_t* token_ids,
                 const __grid_constant__ SampleBatch batch) {
  __shared__ SampleShared shared;
  const RowParams& params = batch.rows[blockIdx.x];
  const int64_t row = batch.first_row + blockIdx.x;
  const RowReader<T, kChunk, kVector> reader{logits + row * vocab, vocab};
  int32_t token;
  if (params.temperature == 0.0f || params.top_k == 1) {
    token = Argmax(reader, shared);
  } else {
    uint32_t floor_key = 0;
    if (params.top_k > 0 && params.top_k < vocab) {
      floor_key = RadixSelect(reader, 0, static_cast<unsigned long long>(params.top_k), 0.0f,
                              CountWeight{}, shared);
    }
    if (params.top_p < 1.0f) {
      const float max_logit = RowMax(reader, shared);
      floor_key = RadixSelect(reader, floor_key, 0, params.top_p,
                              MassWeight{max_logit, Reciprocal(params.temperature)}, shared);
    }
    token = GumbelArgmax<RowReader<T, kChunk, kVector>, kChunk>(reader, floor_key, params, shared);
  }
  if (threadIdx.x == 0) token_ids[row] = token;
}

template <typename T, int kChunk, bool kVector>
cudaError_t LaunchRows(const T* logits, int64_t batch, int64_t vocab, const RowParams* rows,
                       int32_t* token_ids, cudaStream_t stream) {
  SampleBatch chunk;
  for (int64_t first = 0; first < batch; first += kMaxRowsPerLaunch) {
    const int64_t count = batch - first < kMaxRowsPerLaunch ? batch - first : kMaxRowsPerLaunch;
    chunk.first_row = first;
    for (int64_t r = 0; r < count; ++r) chunk.rows[r] = rows[first + r];
    SampleKernel<T, kChunk, kVector>
        <<<static_cast<unsigned>(count), kThreads, 0, stream>>>(logits, vocab, token_ids, chunk);
    if (cudaError_t error = cudaGetLastError(); error != cudaSuccess) return error;
  }
  return cudaSuccess;
}

template <typename T>
cudaError_t LaunchTyped(const void* logits, int64_t batch, int64_t vocab, const RowParams* rows,
                        int32_t* token_ids, cudaStream_t stream) {
  const T* typed = static_cast<const T*>(logits);
  constexpr int kVector = VectorWidth<T>;
  if (vocab % kVector == 0 && IsAligned(typed)) {
    return LaunchRows<T, kVector, true>(typed, batch, vocab, rows, token_ids, stream);
  }
  return LaunchRows<T, 4, false>(typed, batch, vocab, rows, token_ids, stream);
}

}  // namespace

cudaError_t LaunchSample(ElementType type, const void* logits, int64_t batch, int64_t vocab,
                         const RowParams* rows, int32_t* token_ids, cudaStream_t stream) {
  switch (type) {
    case ElementType::kFloat32:
      return LaunchTyped<float>(logits, batch, vocab, rows, token_ids, stream);
    case ElementType::kFloat16:
      return LaunchTyped<__half>(logits, batch, vocab, rows, token_ids, stream);
    case ElementType::kBFloat16:
      return LaunchTyped<__nv_bfloat16>(logits, batch, vocab, rows, token_ids, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace troupe::gpu::sampling::internal
