#include "gpu/attention/prefill_attention.h"

#include <cmath>
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
  std::vector<int32_t> lengths;
  PrefillKernel kernel = PrefillKernel::kAuto;
};

class PrefillAttentionTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
    stream_ = std::make_unique<Stream>(std::move(*Stream::Create(0)));
  }
  std::unique_ptr<Stream> stream_;
};

TEST_P(PrefillAttentionTest, MatchesTheCpuReference) {
  const Case& c = GetParam();
  std::vector<int32_t> cu_seqlens = {0};
  for (int32_t length : c.lengths) cu_seqlens.push_back(cu_seqlens.back() + length);
  const int total = cu_seqlens.back();
  const int max_len = *std::max_element(c.lengths.begin(), c.lengths.end());
  std::vector<float> q =
      testing::Quantized(c.dtype, testing::RandomFloats(total * c.num_heads * c.head_dim, 21));
  std::vector<float> k =
      testing::Quantized(c.dtype, testing::RandomFloats(total * c.num_kv_heads * c.head_dim, 22));
  std::vector<float> v =
      testing::Quantized(c.dtype, testing::RandomFloats(total * c.num_kv_heads * c.head_dim, 23));
  PrefillAttentionParams params;
  params.batch = static_cast<int64_t>(c.lengths.size());
  params.num_heads = c.num_heads;
  params.num_kv_heads = c.num_kv_heads;
  params.head_dim = c.head_dim;
  params.max_seqlen = max_len;
  params.total_tokens = total;
  params.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  params.kernel = c.kernel;

  DeviceArray q_d = *DeviceArray::FromHost(c.dtype, q);
  DeviceArray k_d = *DeviceArray::FromHost(c.dtype, k);
  DeviceArray v_d = *DeviceArray::FromHost(c.dtype, v);
  DeviceArray cu = *DeviceArray::FromInts(cu_seqlens);
  const size_t workspace_bytes = PrefillAttentionWorkspaceBytes(params);
  DeviceArray workspace = *DeviceArray::FromInts(std::vector<int32_t>(workspace_bytes / 4, 77));
  std::vector<double> reference = ReferencePrefill(q, k, v, cu_seqlens, c.num_heads,
                                                   c.num_kv_heads, c.head_dim, params.scale);
  // Twice with the same workspace (garbage before the first call): each call resets it.
  for (int call = 0; call < 2; ++call) {
    DeviceArray out = *DeviceArray::Poisoned(c.dtype, q.size());
    ASSERT_TRUE(PrefillAttention(c.dtype, params, q_d.data(), k_d.data(), v_d.data(),
                                 static_cast<int32_t*>(cu.data()), workspace.data(),
                                 workspace_bytes, out.data(), *stream_)
                    .ok());
    const double error = testing::RelativeError(*out.ToHost(), reference);
    EXPECT_LT(error, testing::Tolerance(c.dtype)) << "call " << call << ": relative error "
                                                  << error;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PrefillAttentionTest,
    ::testing::Values(Case{DType::kFloat16, 2, 2, 128, {1}},
                      Case{DType::kFloat16, 3, 3, 128, {64, 65, 1, 17, 130}},
                      Case{DType::kBFloat16, 2, 2, 128, {300, 63}},
                      Case{DType::kFloat16, 8, 2, 128, {257, 31}},     // GQA, group 4.
                      Case{DType::kBFloat16, 4, 1, 64, {129, 200, 7}}, // GQA, group 4, d 64.
                      Case{DType::kFloat16, 2, 2, 64, {511}},
                      // The portable mma.sync kernel at head_dim 128, which kAuto skips on
                      // H100/H200.
                      Case{DType::kFloat16, 3, 3, 128, {64, 65, 1, 17, 130},
                           PrefillKernel::kMmaSync},
                      Case{DType::kBFloat16, 8, 2, 128, {300, 129}, PrefillKernel::kMmaSync},
                      // The wgmma kernel on longer and odd sequences.
                      Case{DType::kBFloat16, 4, 4, 128, {1000, 257, 128, 129}},
                      Case{DType::kFloat16, 4, 2, 128, {513, 1}},
                      // The TMA kernel (kAuto on H100/H200) at long, odd and tiny lengths.
                      Case{DType::kBFloat16, 2, 2, 128, {2049, 3, 384}, PrefillKernel::kWgmma},
                      Case{DType::kFloat16, 8, 1, 128, {700, 1, 127, 129}, PrefillKernel::kWgmma},
                      // 324 work items: a few per block of the persistent kernel on any GPU.
                      Case{DType::kBFloat16, 12, 4, 128, {1100, 300, 45}, PrefillKernel::kWgmma}));

TEST(PrefillAttentionArgsTest, BadArgumentsAreRefused) {
  if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
  Stream stream = *Stream::Create(0);
  PrefillAttentionParams p;
  p.batch = 1;
  p.num_heads = 6;
  p.num_kv_heads = 4;
  p.head_dim = 128;
  p.max_seqlen = 10;
  p.total_tokens = 10;
  p.scale = 0.1f;
  int dummy = 0;
  const size_t workspace_bytes = PrefillAttentionWorkspaceBytes(p);
  auto run = [&](DType dtype, const PrefillAttentionParams& params) {
    return PrefillAttention(dtype, params, &dummy, &dummy, &dummy, &dummy, &dummy,
                            workspace_bytes, &dummy, stream);
  };
  EXPECT_THAT(run(DType::kFloat16, p).message(), HasSubstr("not a multiple of num_kv_heads"));
  p.num_kv_heads = 3;
  EXPECT_THAT(run(DType::kFloat32, p).message(), HasSubstr("not fp32"));
  PrefillAttentionParams bad = p;
  bad.head_dim = 80;
  EXPECT_THAT(run(DType::kFloat16, bad).message(), HasSubstr("is not 64 or 128"));
  bad = p;
  bad.max_seqlen = 0;
  EXPECT_THAT(run(DType::kFloat16, bad).message(), HasSubstr("must be positive"));
  bad = p;
  bad.total_tokens = 11;
  EXPECT_THAT(run(DType::kFloat16, bad).message(), HasSubstr("exceeds batch * max_seqlen"));
  EXPECT_THAT(PrefillAttention(DType::kFloat16, p, nullptr, &dummy, &dummy, &dummy, &dummy,
                               workspace_bytes, &dummy, stream)
                  .message(),
              HasSubstr("null"));
  EXPECT_THAT(PrefillAttention(DType::kFloat16, p, &dummy, &dummy, &dummy, &dummy, nullptr,
                               workspace_bytes, &dummy, stream)
                  .message(),
              HasSubstr("needs a workspace of"));
  EXPECT_THAT(PrefillAttention(DType::kFloat16, p, &dummy, &dummy, &dummy, &dummy, &dummy,
                               workspace_bytes - 1, &dummy, stream)
                  .message(),
              HasSubstr("size it with PrefillAttentionWorkspaceBytes"));
}

}  // namespace
}  // namespace troupe::gpu::attention
