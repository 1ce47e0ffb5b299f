#include "gpu/attention/decode_attention.h"

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gpu/attention/attention_reference.h"
#include "gpu/stream.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu::attention {
namespace {

using testing::DeviceArray;
using ::testing::HasSubstr;

struct Case {
  DType dtype;
  int num_heads;
  int num_kv_heads;
  int head_dim;
  std::vector<int32_t> context_lens;
  int partition_tokens = 0;  // 0: the kernel's own choice.
};

class DecodeAttentionTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
    stream_ = std::make_unique<Stream>(std::move(*Stream::Create(0)));
  }
  std::unique_ptr<Stream> stream_;
};

TEST_P(DecodeAttentionTest, MatchesTheCpuReference) {
  const Case& c = GetParam();
  const int batch = static_cast<int>(c.context_lens.size());
  const int max_len = *std::max_element(c.context_lens.begin(), c.context_lens.end());
  const int max_blocks = (max_len + kBlockSize - 1) / kBlockSize + 1;  // A spare column.
  const KvCacheShape shape{batch * max_blocks + 3, c.num_kv_heads, c.head_dim};
  // Each sequence gets its blocks from a shuffled pool; unused table entries point anywhere.
  std::vector<int32_t> pool(shape.num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), std::mt19937(7));
  std::vector<int32_t> tables(batch * max_blocks);
  for (int i = 0; i < batch * max_blocks; ++i) tables[i] = pool[i];

  const size_t cache_elements =
      static_cast<size_t>(shape.num_blocks) * c.num_kv_heads * kBlockSize * c.head_dim;
  std::vector<float> q =
      testing::Quantized(c.dtype, testing::RandomFloats(batch * c.num_heads * c.head_dim, 11));
  std::vector<float> k = testing::Quantized(c.dtype, testing::RandomFloats(cache_elements, 12));
  std::vector<float> v = testing::Quantized(c.dtype, testing::RandomFloats(cache_elements, 13));

  DecodeAttentionParams params;
  params.batch = batch;
  params.num_heads = c.num_heads;
  params.cache = shape;
  params.max_blocks_per_seq = max_blocks;
  params.max_context_len = max_len;
  params.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  params.partition_tokens = c.partition_tokens;

  DeviceArray query = *DeviceArray::FromHost(c.dtype, q);
  DeviceArray key_cache = *DeviceArray::FromHost(c.dtype, k);
  DeviceArray value_cache = *DeviceArray::FromHost(c.dtype, v);
  DeviceArray block_tables = *DeviceArray::FromInts(tables);
  DeviceArray context_lens = *DeviceArray::FromInts(c.context_lens);
  const size_t workspace_bytes = DecodeAttentionWorkspaceBytes(params);
  DeviceArray workspace = *DeviceArray::Poisoned(DType::kFloat32, workspace_bytes / 4 + 1);
  DeviceArray output = *DeviceArray::Poisoned(c.dtype, q.size());
  ASSERT_TRUE(PagedDecodeAttention(c.dtype, params, query.data(), key_cache.data(),
                                   value_cache.data(), static_cast<int32_t*>(block_tables.data()),
                                   static_cast<int32_t*>(context_lens.data()), workspace.data(),
                                   workspace_bytes, output.data(), *stream_)
                  .ok());
  std::vector<double> reference = ReferencePagedDecode(q, k, v, tables, c.context_lens,
                                                       c.num_heads, shape, max_blocks,
                                                       params.scale);
  const double error = testing::RelativeError(*output.ToHost(), reference);
  EXPECT_LT(error, testing::Tolerance(c.dtype)) << "relative error " << error;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, DecodeAttentionTest,
    ::testing::Values(
        Case{DType::kFloat16, 4, 4, 128, {1, 17, 300, 512}},            // MHA, one partition.
        Case{DType::kBFloat16, 4, 4, 128, {513, 1100, 16, 2049}},       // Several partitions.
        Case{DType::kFloat16, 8, 2, 128, {33, 700, 1}},                 // GQA, group 4.
        Case{DType::kBFloat16, 8, 1, 64, {5, 1023, 64}},                // GQA, group 8, d 64.
        Case{DType::kFloat16, 6, 3, 64, {1500, 2}},                     // Group 2.
        // OPT-13B heads; 13 x 40 thread blocks, enough for whole 1024-token contexts by default.
        Case{DType::kFloat16, 40, 40, 128, std::vector<int32_t>(13, 1024)},
        Case{DType::kBFloat16, 3, 3, 64, {700, 16, 33}},                // MHA, d 64.
        Case{DType::kBFloat16, 4, 4, 128, {1025, 3000, 1024, 7}, 1024},  // Large partitions.
        Case{DType::kFloat16, 16, 2, 64, {2047, 1, 1024}, 1024},         // Large, group 8.
        Case{DType::kFloat16, 2, 2, 128, {1024, 600}, 512},              // Small, forced.
        Case{DType::kBFloat16, 8, 4, 128, {1000, 257, 3}, 256}));         // Tiny, forced.

TEST(DecodeAttentionArgsTest, BadArgumentsAreRefused) {
  if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
  Stream stream = *Stream::Create(0);
  DecodeAttentionParams p;
  p.batch = 2;
  p.num_heads = 6;
  p.cache = {10, 4, 128};
  p.max_blocks_per_seq = 4;
  p.max_context_len = 64;
  p.scale = 0.1f;
  int dummy = 0;
  auto run = [&](DType dtype, const DecodeAttentionParams& params, void* workspace = nullptr,
                 size_t bytes = 0) {
    return PagedDecodeAttention(dtype, params, &dummy, &dummy, &dummy, &dummy, &dummy, workspace,
                                bytes, &dummy, stream);
  };
  EXPECT_THAT(run(DType::kFloat16, p).message(), HasSubstr("must be 1, 2, 4 or 8"));
  p.num_heads = 8;
  EXPECT_THAT(run(DType::kFloat32, p).message(), HasSubstr("not fp32"));
  DecodeAttentionParams bad_dim = p;
  bad_dim.cache.head_dim = 96;
  EXPECT_THAT(run(DType::kFloat16, bad_dim).message(), HasSubstr("is not 64 or 128"));
  DecodeAttentionParams short_tables = p;
  short_tables.max_context_len = 100;
  EXPECT_THAT(run(DType::kFloat16, short_tables).message(), HasSubstr("needs 7 blocks"));
  DecodeAttentionParams long_context = p;
  long_context.max_context_len = 60;
  long_context.max_blocks_per_seq = 200;
  long_context.max_context_len = 3000;
  EXPECT_THAT(run(DType::kFloat16, long_context).message(),
              HasSubstr("DecodeAttentionWorkspaceBytes"));
  DecodeAttentionParams odd_partition = p;
  odd_partition.partition_tokens = 300;
  EXPECT_THAT(run(DType::kFloat16, odd_partition).message(), HasSubstr("partition_tokens 300"));
}

}  // namespace
}  // namespace troupe::gpu::attention
