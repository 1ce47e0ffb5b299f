// Embedding lookup kernel, launched from embedding.cc. The grid's x dimension walks tokens and y
// the blocks of one row; each thread copies one 16-byte access (or one element when the rows are
// not 16-byte aligned) and, for OPT, adds the learned position embedding in fp32.
#include "gpu/kernels/internal/device_helpers.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels::internal {
namespace {

template <typename T>
struct EmbeddingParams {
  const int32_t* token_ids;
  const T* table;
  const int32_t* positions;
  const T* position_table;
  T* output;
  int64_t vocab_size;
  int64_t hidden;
  int64_t num_positions;
  int64_t position_offset;
};

template <typename T, int kWidth, bool kPositions>
__global__ void EmbeddingKernel(const EmbeddingParams<T> p) {
  const int64_t column =
      (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * kWidth;
  if (column >= p.hidden) return;
  const int64_t token = blockIdx.x;
  // Ids outside the table (another shard's vocabulary, or garbage) give zeros, never a read
  // outside the table.
  const int64_t id = p.token_ids[token];
  float v[kWidth] = {};
  if (id >= 0 && id < p.vocab_size) LoadFloats<kWidth>(p.table + id * p.hidden + column, v);
  if constexpr (kPositions) {
    const int64_t position = static_cast<int64_t>(p.positions[token]) + p.position_offset;
    if (position >= 0 && position < p.num_positions) {
      float e[kWidth];
      LoadFloats<kWidth>(p.position_table + position * p.hidden + column, e);
#pragma unroll
      for (int i = 0; i < kWidth; ++i) v[i] += e[i];
    }
  }
  StoreFloats<kWidth>(v, p.output + token * p.hidden + column);
}

template <typename T, int kWidth, bool kPositions>
cudaError_t LaunchForWidth(const EmbeddingParams<T>& p, int64_t num_tokens,
                           cudaStream_t stream) {
  const RowTiling tiling = TileRow(p.hidden / kWidth);
  if (tiling.blocks_per_row > kMaxGridY) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(num_tokens), tiling.blocks_per_row);
  EmbeddingKernel<T, kWidth, kPositions><<<grid, tiling.threads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T, bool kPositions>
cudaError_t LaunchForPositions(const EmbeddingParams<T>& p, int64_t num_tokens,
                               cudaStream_t stream) {
  constexpr int kVector = VectorWidth<T>;
  const bool vector = p.hidden % kVector == 0 && IsAligned(p.table) && IsAligned(p.output) &&
                      IsAligned(p.position_table);
  if (vector) return LaunchForWidth<T, kVector, kPositions>(p, num_tokens, stream);
  return LaunchForWidth<T, 1, kPositions>(p, num_tokens, stream);
}

template <typename T>
cudaError_t LaunchTyped(const EmbeddingLaunch& args, cudaStream_t stream) {
  const EmbeddingParams<T> p{args.token_ids,
                             static_cast<const T*>(args.table),
                             args.positions,
                             static_cast<const T*>(args.position_table),
                             static_cast<T*>(args.output),
                             args.vocab_size,
                             args.hidden,
                             args.num_positions,
                             args.position_offset};
  if (args.positions != nullptr) return LaunchForPositions<T, true>(p, args.num_tokens, stream);
  return LaunchForPositions<T, false>(p, args.num_tokens, stream);
}

}  // namespace

cudaError_t LaunchEmbedding(ElementType type, const EmbeddingLaunch& args, cudaStream_t stream) {
  switch (type) {
    case ElementType::kFloat32: return LaunchTyped<float>(args, stream);
    case ElementType::kFloat16: return LaunchTyped<__half>(args, stream);
    case ElementType::kBFloat16: return LaunchTyped<__nv_bfloat16>(args, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace troupe::gpu::kernels::internal
