#include "gpu/attention/paged_kv.h"

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gpu/stream.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu::attention {
namespace {

using testing::DeviceArray;
using ::testing::HasSubstr;

class PagedKvTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
    stream_ = std::make_unique<Stream>(std::move(*Stream::Create(0)));
  }
  std::unique_ptr<Stream> stream_;
};

TEST_P(PagedKvTest, WriteKvFillsExactlyTheMappedSlots) {
  const DType dtype = GetParam();
  const KvCacheShape shape{/*num_blocks=*/7, /*num_kv_heads=*/3, /*head_dim=*/64};
  const int tokens = 37;
  const size_t per_token = shape.num_kv_heads * shape.head_dim;
  std::vector<float> key = testing::Quantized(dtype, testing::RandomFloats(tokens * per_token, 1));
  std::vector<float> value =
      testing::Quantized(dtype, testing::RandomFloats(tokens * per_token, 2));
  // Distinct slots in random order; every fifth token is padding (-1).
  std::vector<int32_t> slots(shape.num_blocks * kBlockSize);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), std::mt19937(3));
  slots.resize(tokens);
  for (int t = 0; t < tokens; t += 5) slots[t] = -1;

  const size_t cache_elements = shape.num_blocks * per_token * kBlockSize;
  DeviceArray k = *DeviceArray::FromHost(dtype, key), v = *DeviceArray::FromHost(dtype, value);
  DeviceArray slot_mapping = *DeviceArray::FromInts(slots);
  DeviceArray k_cache = *DeviceArray::Poisoned(dtype, cache_elements);
  DeviceArray v_cache = *DeviceArray::Poisoned(dtype, cache_elements);
  ASSERT_TRUE(WriteKv(dtype, k.data(), v.data(), static_cast<int32_t*>(slot_mapping.data()),
                      tokens, shape, k_cache.data(), v_cache.data(), *stream_)
                  .ok());
  std::vector<float> k_out = *k_cache.ToHost(), v_out = *v_cache.ToHost();
  std::vector<bool> written(cache_elements, false);
  for (int t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    const int block = slots[t] / kBlockSize, slot = slots[t] % kBlockSize;
    for (int h = 0; h < shape.num_kv_heads; ++h) {
      for (int d = 0; d < shape.head_dim; ++d) {
        const size_t at = ((static_cast<size_t>(block) * shape.num_kv_heads + h) * kBlockSize +
                           slot) * shape.head_dim + d;
        const size_t from = t * per_token + h * shape.head_dim + d;
        ASSERT_EQ(k_out[at], key[from]);
        ASSERT_EQ(v_out[at], value[from]);
        written[at] = true;
      }
    }
  }
  for (size_t i = 0; i < cache_elements; ++i) {
    if (!written[i]) {
      ASSERT_TRUE(std::isnan(k_out[i]) && std::isnan(v_out[i])) << i;
    }
  }
}

TEST_P(PagedKvTest, GatherThenScatterMovesAHeadRangeOfBlocks) {
  const DType dtype = GetParam();
  const KvCacheShape shape{/*num_blocks=*/9, /*num_kv_heads=*/4, /*head_dim=*/128};
  const size_t block_elements = static_cast<size_t>(kBlockSize) * shape.head_dim;
  const size_t cache_elements = shape.num_blocks * shape.num_kv_heads * block_elements;
  std::vector<float> source = testing::Quantized(dtype, testing::RandomFloats(cache_elements, 4));
  const std::vector<int32_t> blocks = {5, 0, 8, 3};
  const int head_begin = 1, head_end = 3;
  const int moved = head_end - head_begin;

  DeviceArray cache = *DeviceArray::FromHost(dtype, source);
  DeviceArray ids = *DeviceArray::FromInts(blocks);
  DeviceArray packed = *DeviceArray::Poisoned(dtype, blocks.size() * moved * block_elements);
  ASSERT_TRUE(GatherKvBlocks(dtype, cache.data(), shape, static_cast<int32_t*>(ids.data()),
                             blocks.size(), head_begin, head_end, packed.data(), *stream_)
                  .ok());
  std::vector<float> packed_host = *packed.ToHost();
  for (size_t b = 0; b < blocks.size(); ++b) {
    for (int h = 0; h < moved; ++h) {
      for (size_t e = 0; e < block_elements; ++e) {
        ASSERT_EQ(packed_host[(b * moved + h) * block_elements + e],
                  source[(blocks[b] * shape.num_kv_heads + head_begin + h) * block_elements + e]);
      }
    }
  }

  // Scatter into other blocks of a poisoned cache: only those heads of those blocks change.
  const std::vector<int32_t> targets = {2, 7, 1, 4};
  DeviceArray target_ids = *DeviceArray::FromInts(targets);
  DeviceArray destination = *DeviceArray::Poisoned(dtype, cache_elements);
  ASSERT_TRUE(ScatterKvBlocks(dtype, packed.data(), static_cast<int32_t*>(target_ids.data()),
                              targets.size(), head_begin, head_end, shape, destination.data(),
                              *stream_)
                  .ok());
  std::vector<float> out = *destination.ToHost();
  for (int block = 0; block < shape.num_blocks; ++block) {
    const auto it = std::find(targets.begin(), targets.end(), block);
    for (int h = 0; h < shape.num_kv_heads; ++h) {
      const bool moved_here = it != targets.end() && h >= head_begin && h < head_end;
      for (size_t e = 0; e < block_elements; ++e) {
        const float got = out[(block * shape.num_kv_heads + h) * block_elements + e];
        if (moved_here) {
          const size_t b = it - targets.begin();
          ASSERT_EQ(got, source[(blocks[b] * shape.num_kv_heads + h) * block_elements + e]);
        } else {
          ASSERT_TRUE(std::isnan(got));
        }
      }
    }
  }
}

// Two shards of different shapes (as a tensor-parallel rank and a pipeline stage would hold):
// the copy moves exactly the shared layers and heads of the listed block pairs.
TEST_P(PagedKvTest, CopyKvBlocksMovesTheSharedLayersAndHeadsOfEachPair) {
  const DType dtype = GetParam();
  const int head_dim = 64;
  const size_t head_elements = static_cast<size_t>(kBlockSize) * head_dim;
  // Source: layers [0, 4), heads [0, 6), 11 blocks. Destination: layers [2, 5), heads [2, 4),
  // 7 blocks. Shared: layers [2, 4), heads [2, 4).
  const KvShardArrays src_shape{nullptr, 11, 0, 4, 0, 6, head_dim};
  const KvShardArrays dst_shape{nullptr, 7, 2, 3, 2, 2, head_dim};
  const auto elements = [&](const KvShardArrays& s) {
    return static_cast<size_t>(s.num_layers) * 2 * s.num_blocks * s.num_heads * head_elements;
  };
  const auto index = [&](const KvShardArrays& s, int layer, int kv, int64_t block, int head) {
    return ((((static_cast<size_t>(layer - s.layer_begin) * 2 + kv) * s.num_blocks + block) *
                 s.num_heads +
             (head - s.head_begin)) *
            head_elements);
  };
  std::vector<float> source =
      testing::Quantized(dtype, testing::RandomFloats(elements(src_shape), 11));
  DeviceArray src = *DeviceArray::FromHost(dtype, source);
  DeviceArray dst = *DeviceArray::Poisoned(dtype, elements(dst_shape));
  const std::vector<int32_t> pairs = {10, 3, 0, 6, 4, 0};  // (source block, destination block)
  DeviceArray pair_ids = *DeviceArray::FromInts(pairs);
  KvShardArrays from = src_shape, to = dst_shape;
  from.base = src.data();
  to.base = dst.data();
  ASSERT_TRUE(CopyKvBlocks(dtype, from, to, static_cast<int32_t*>(pair_ids.data()), 3, 2, 4, 2, 4,
                           *stream_)
                  .ok());
  std::vector<float> out = *dst.ToHost();
  size_t copied = 0;
  for (int layer = 2; layer < 5; ++layer) {
    for (int kv = 0; kv < 2; ++kv) {
      for (int block = 0; block < dst_shape.num_blocks; ++block) {
        for (int head = 2; head < 4; ++head) {
          int source_block = -1;
          for (size_t p = 0; p < pairs.size(); p += 2) {
            if (pairs[p + 1] == block) source_block = pairs[p];
          }
          const bool moved = layer < 4 && source_block >= 0;
          for (size_t e = 0; e < head_elements; ++e) {
            const float got = out[index(dst_shape, layer, kv, block, head) + e];
            if (moved) {
              ASSERT_EQ(got, source[index(src_shape, layer, kv, source_block, head) + e])
                  << "layer " << layer << " kv " << kv << " block " << block << " head " << head;
              ++copied;
            } else {
              ASSERT_TRUE(std::isnan(got)) << "layer " << layer << " block " << block;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(copied, 2u * 2 * 3 * 2 * head_elements);  // layers x K/V x pairs x heads

  // A range outside a shard is refused by name, and nothing runs.
  EXPECT_THAT(CopyKvBlocks(dtype, from, to, static_cast<int32_t*>(pair_ids.data()), 3, 1, 4, 2, 4,
                           *stream_)
                  .message(),
              HasSubstr("not all in the destination shard"));
  EXPECT_THAT(CopyKvBlocks(dtype, from, to, static_cast<int32_t*>(pair_ids.data()), 3, 2, 4, 2, 7,
                           *stream_)
                  .message(),
              HasSubstr("not all in the source shard"));
}

TEST_P(PagedKvTest, BadArgumentsAreRefused) {
  const DType dtype = GetParam();
  int dummy = 0;
  EXPECT_THAT(WriteKv(dtype, &dummy, &dummy, &dummy, 1, {4, 2, 60}, &dummy, &dummy, *stream_)
                  .message(),
              HasSubstr("head_dim a multiple of 8"));
  EXPECT_THAT(WriteKv(DType::kFloat32, &dummy, &dummy, &dummy, 1, {4, 2, 64}, &dummy, &dummy,
                      *stream_)
                  .message(),
              HasSubstr("not fp32"));
  EXPECT_THAT(WriteKv(dtype, nullptr, &dummy, &dummy, 1, {4, 2, 64}, &dummy, &dummy, *stream_)
                  .message(),
              HasSubstr("null"));
  EXPECT_THAT(GatherKvBlocks(dtype, &dummy, {4, 2, 64}, &dummy, 1, 1, 3, &dummy, *stream_)
                  .message(),
              HasSubstr("head range [1, 3)"));
  EXPECT_TRUE(WriteKv(dtype, &dummy, &dummy, &dummy, 0, {4, 2, 64}, &dummy, &dummy, *stream_)
                  .ok());  // Nothing to do.
}

INSTANTIATE_TEST_SUITE_P(Dtypes, PagedKvTest,
                         ::testing::Values(DType::kFloat16, DType::kBFloat16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

}  // namespace
}  // namespace troupe::gpu::attention
