#include "gpu/kernels/embedding.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gpu/dtype.h"
#include "gpu/kernels/internal/kernel_test_base.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu::kernels {
namespace {

using internal::AllDTypes;
using internal::Download;
using internal::DTypeParamName;
using internal::ElementAt;
using internal::ExpectInvalidArgument;
using internal::Poisoned;
using internal::Tail;
using internal::Upload;
using internal::UploadInts;
using internal::WithPadding;
using testing::Quantized;
using testing::RandomFloats;
using testing::RandomInts;
using testing::RelativeError;

// Reference: rows of `table` (and `position_table` at positions + offset), zero where out of
// range, in double.
std::vector<double> EmbeddingReference(const std::vector<int32_t>& ids,
                                       const std::vector<float>& table, int64_t vocab,
                                       int64_t hidden, const std::vector<int32_t>& positions = {},
                                       const std::vector<float>& position_table = {},
                                       int64_t num_positions = 0, int64_t offset = 0) {
  std::vector<double> out(ids.size() * hidden, 0.0);
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int64_t c = 0; c < hidden; ++c) {
      double value = 0;
      if (ids[t] >= 0 && ids[t] < vocab) value = table[ids[t] * hidden + c];
      if (!positions.empty()) {
        const int64_t row = int64_t{positions[t]} + offset;
        if (row >= 0 && row < num_positions) value += position_table[row * hidden + c];
      }
      out[t * hidden + c] = value;
    }
  }
  return out;
}

class EmbeddingTest : public internal::KernelTest {};

TEST_P(EmbeddingTest, GathersRows) {
  constexpr int64_t kVocab = 1000;
  for (int64_t hidden : {1, 7, 8, 64, 100, 768, 5120}) {
    for (int64_t tokens : {1, 5, 300}) {
      const std::vector<float> table =
          Quantized(dtype(), RandomFloats(kVocab * hidden, hidden, 1.0f, 0.1f));
      const std::vector<int32_t> ids = RandomInts(tokens, tokens, 0, kVocab - 1);
      auto table_device = Upload(dtype(), table);
      auto ids_device = UploadInts(ids);
      auto out = Poisoned(dtype(), tokens * hidden);
      ASSERT_TRUE(Embedding(dtype(), static_cast<const int32_t*>(ids_device.data()),
                            table_device.data(), out.data(), tokens, kVocab, hidden, stream())
                      .ok());
      // A gather copies exactly: no rounding at all.
      EXPECT_EQ(RelativeError(Download(out), EmbeddingReference(ids, table, kVocab, hidden)), 0.0)
          << tokens << " tokens x " << hidden;
    }
  }
}

TEST_P(EmbeddingTest, OutOfRangeIdsGiveZeroRows) {
  constexpr int64_t kVocab = 50, kHidden = 64;
  const std::vector<float> table = Quantized(dtype(), RandomFloats(kVocab * kHidden, 2));
  const std::vector<int32_t> ids = {0, -1, 49, 50, std::numeric_limits<int32_t>::max(),
                                    std::numeric_limits<int32_t>::min(), 7};
  auto table_device = Upload(dtype(), table);
  auto ids_device = UploadInts(ids);
  auto out = Poisoned(dtype(), ids.size() * kHidden);
  ASSERT_TRUE(Embedding(dtype(), static_cast<const int32_t*>(ids_device.data()),
                        table_device.data(), out.data(), ids.size(), kVocab, kHidden, stream())
                  .ok());
  const std::vector<float> result = Download(out);
  EXPECT_EQ(RelativeError(result, EmbeddingReference(ids, table, kVocab, kHidden)), 0.0);
  for (int64_t c = 0; c < kHidden; ++c) EXPECT_EQ(result[1 * kHidden + c], 0.0f);
}

// OPT: learned positions at row position + 2, summed with the token row.
TEST_P(EmbeddingTest, AddsOptLearnedPositions) {
  constexpr int64_t kVocab = 500, kMaxPositions = 2048, kRows = kMaxPositions + kOptPositionOffset;
  for (int64_t hidden : {7, 64, 768}) {
    const std::vector<float> table = Quantized(dtype(), RandomFloats(kVocab * hidden, 3));
    const std::vector<float> positions_table = Quantized(dtype(), RandomFloats(kRows * hidden, 4));
    std::vector<int32_t> ids = RandomInts(40, 5, 0, kVocab - 1);
    std::vector<int32_t> positions = RandomInts(40, 6, 0, kMaxPositions - 1);
    positions[3] = kMaxPositions;  // row 2050: outside the table, adds nothing
    positions[4] = -3;             // row -1: likewise
    positions[5] = -2;             // row 0: valid
    auto table_device = Upload(dtype(), table);
    auto position_device = Upload(dtype(), positions_table);
    auto ids_device = UploadInts(ids);
    auto positions_device = UploadInts(positions);
    auto out = Poisoned(dtype(), ids.size() * hidden);
    ASSERT_TRUE(EmbeddingWithPositions(dtype(), static_cast<const int32_t*>(ids_device.data()),
                                       table_device.data(),
                                       static_cast<const int32_t*>(positions_device.data()),
                                       position_device.data(), out.data(), ids.size(), kVocab,
                                       hidden, kRows, kOptPositionOffset, stream())
                    .ok());
    EXPECT_LT(RelativeError(Download(out),
                            EmbeddingReference(ids, table, kVocab, hidden, positions,
                                               positions_table, kRows, kOptPositionOffset)),
              tolerance())
        << hidden;
  }
}

TEST_P(EmbeddingTest, UnalignedTableUsesTheElementPath) {
  constexpr int64_t kVocab = 100, kHidden = 256, kTokens = 9;
  const std::vector<float> table = Quantized(dtype(), RandomFloats(kVocab * kHidden, 8));
  const std::vector<int32_t> ids = RandomInts(kTokens, 9, 0, kVocab - 1);
  auto table_device = Upload(dtype(), WithPadding(table, 1));
  auto ids_device = UploadInts(ids);
  auto out = Poisoned(dtype(), kTokens * kHidden + 1);
  ASSERT_TRUE(Embedding(dtype(), static_cast<const int32_t*>(ids_device.data()),
                        ElementAt(table_device, 1), ElementAt(out, 1), kTokens, kVocab, kHidden,
                        stream())
                  .ok());
  EXPECT_EQ(RelativeError(Tail(Download(out), 1), EmbeddingReference(ids, table, kVocab, kHidden)),
            0.0);
}

TEST_P(EmbeddingTest, BadArgumentsAreInvalidArgument) {
  auto table = Upload(dtype(), RandomFloats(64, 1));
  auto ids_device = UploadInts({0});
  const int32_t* ids = static_cast<const int32_t*>(ids_device.data());
  void* p = table.data();
  ExpectInvalidArgument(Embedding(dtype(), nullptr, p, p, 1, 8, 8, stream()), "token_ids");
  ExpectInvalidArgument(Embedding(dtype(), ids, nullptr, p, 1, 8, 8, stream()), "table");
  ExpectInvalidArgument(Embedding(dtype(), ids, p, nullptr, 1, 8, 8, stream()), "output");
  ExpectInvalidArgument(Embedding(dtype(), ids, p, p, 0, 8, 8, stream()), "num_tokens");
  ExpectInvalidArgument(Embedding(dtype(), ids, p, p, 1, 0, 8, stream()), "vocab_size");
  ExpectInvalidArgument(Embedding(dtype(), ids, p, p, 1, 8, 0, stream()), "hidden");
  ExpectInvalidArgument(
      EmbeddingWithPositions(dtype(), ids, p, nullptr, p, p, 1, 8, 8, 8, 2, stream()),
      "positions");
  ExpectInvalidArgument(
      EmbeddingWithPositions(dtype(), ids, p, ids, nullptr, p, 1, 8, 8, 8, 2, stream()),
      "position_table");
  ExpectInvalidArgument(
      EmbeddingWithPositions(dtype(), ids, p, ids, p, p, 1, 8, 8, 0, 2, stream()),
      "num_positions");
}

INSTANTIATE_TEST_SUITE_P(Types, EmbeddingTest, AllDTypes(), DTypeParamName);

}  // namespace
}  // namespace troupe::gpu::kernels
