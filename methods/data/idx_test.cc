#include "methods/data/idx.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "methods/data/idx_test_files.h"

namespace troupe::methods::data {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Small images: 3 of them, 2 rows x 4 columns.
constexpr int kRows = 2;
constexpr int kCols = 4;
constexpr uint32_t kCount = 3;

IdxOptions SmallOptions() {
  IdxOptions options;
  options.rows = kRows;
  options.cols = kCols;
  return options;
}

std::vector<uint8_t> Pixels() {
  std::vector<uint8_t> pixels(kCount * kRows * kCols);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7 + 1);
  return pixels;
}

std::vector<uint8_t> ImagesBytes() {
  return IdxBytes(kIdxImagesMagic, {kCount, kRows, kCols}, Pixels());
}

std::vector<uint8_t> LabelsBytes() { return IdxBytes(kIdxLabelsMagic, {kCount}, {9, 0, 4}); }

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }

class IdxTest : public ::testing::TestWithParam<Compression> {
 protected:
  // Write stores `bytes` under `name` with the test's compression and returns the path.
  std::string Write(const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string suffix = GetParam() == Compression::kGzip ? ".gz" : "";
    const std::string path = WriteIdxFile(TempPath(name + suffix), bytes, GetParam());
    EXPECT_FALSE(path.empty()) << "could not write " << name;
    return path;
  }
};

TEST_P(IdxTest, ImagesRoundTrip) {
  absl::StatusOr<IdxImages> images = ReadIdxImages(Write("images", ImagesBytes()), SmallOptions());
  ASSERT_TRUE(images.ok()) << images.status();
  EXPECT_EQ(images->count, kCount);
  EXPECT_EQ(images->rows, kRows);
  EXPECT_EQ(images->cols, kCols);
  EXPECT_EQ(images->pixels, Pixels());
}

TEST_P(IdxTest, LabelsRoundTrip) {
  absl::StatusOr<std::vector<uint8_t>> labels =
      ReadIdxLabels(Write("labels", LabelsBytes()), SmallOptions());
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_THAT(*labels, ElementsAre(9, 0, 4));
}

TEST_P(IdxTest, ZeroImagesAreValid) {
  absl::StatusOr<IdxImages> images = ReadIdxImages(
      Write("no_images", IdxBytes(kIdxImagesMagic, {0, kRows, kCols}, {})), SmallOptions());
  ASSERT_TRUE(images.ok()) << images.status();
  EXPECT_EQ(images->count, 0);
  EXPECT_TRUE(images->pixels.empty());
}

TEST_P(IdxTest, WrongMagicNamesFileAndSuggestsSwappedPaths) {
  const std::string path = Write("labels_as_images", LabelsBytes());
  absl::StatusOr<IdxImages> images = ReadIdxImages(path, SmallOptions());
  EXPECT_EQ(images.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(images.status().message(),
              AllOf(HasSubstr(path), HasSubstr("0x00000801"), HasSubstr("0x00000803"),
                    HasSubstr("swapped"), HasSubstr("reinstall")));

  std::vector<uint8_t> garbage = LabelsBytes();
  garbage[2] = 0x0d;  // IDX type float instead of unsigned byte.
  const std::string float_path = Write("float_labels", garbage);
  absl::StatusOr<std::vector<uint8_t>> labels = ReadIdxLabels(float_path, SmallOptions());
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(labels.status().message(), AllOf(HasSubstr(float_path), HasSubstr("0x00000d01")));
}

TEST_P(IdxTest, TruncatedDataNamesFile) {
  std::vector<uint8_t> bytes = ImagesBytes();
  bytes.pop_back();
  const std::string path = Write("truncated_images", bytes);
  absl::StatusOr<IdxImages> images = ReadIdxImages(path, SmallOptions());
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(images.status().message(), AllOf(HasSubstr(path), HasSubstr("truncated"),
                                               HasSubstr("declares 24"), HasSubstr("holds 23")));
}

TEST_P(IdxTest, HugeDeclaredCountIsTruncation) {
  const std::string path =
      Write("huge_count", IdxBytes(kIdxImagesMagic, {0xffffffff, 0xffffffff, 0xffffffff}, {}));
  absl::StatusOr<IdxImages> images = ReadIdxImages(path, SmallOptions());
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  // (2^32 - 1)^3 bytes, which no 64-bit count can hold.
  EXPECT_THAT(
      images.status().message(),
      AllOf(HasSubstr(path), HasSubstr("79228162458924105385300197375"), HasSubstr("truncated")));
}

TEST_P(IdxTest, TruncatedHeaderNamesFile) {
  std::vector<uint8_t> bytes = ImagesBytes();
  bytes.resize(9);  // The magic and one and a quarter dimensions.
  const std::string path = Write("truncated_header", bytes);
  absl::StatusOr<IdxImages> images = ReadIdxImages(path, SmallOptions());
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(images.status().message(), AllOf(HasSubstr(path), HasSubstr("header")));

  const std::string empty = Write("empty", {});
  absl::StatusOr<std::vector<uint8_t>> labels = ReadIdxLabels(empty, SmallOptions());
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(labels.status().message(), AllOf(HasSubstr(empty), HasSubstr("truncated")));
}

TEST_P(IdxTest, TrailingBytesNameFile) {
  std::vector<uint8_t> bytes = LabelsBytes();
  bytes.push_back(0);
  const std::string path = Write("trailing_labels", bytes);
  absl::StatusOr<std::vector<uint8_t>> labels = ReadIdxLabels(path, SmallOptions());
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(labels.status().message(), AllOf(HasSubstr(path), HasSubstr("trailing")));
}

TEST_P(IdxTest, LabelOutOfRangeNamesFileAndIndex) {
  const std::string path = Write("label_ten", IdxBytes(kIdxLabelsMagic, {3}, {1, 10, 2}));
  absl::StatusOr<std::vector<uint8_t>> labels = ReadIdxLabels(path, SmallOptions());
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(labels.status().message(),
              AllOf(HasSubstr(path), HasSubstr("label 10 (index 1)"), HasSubstr("10 classes")));
}

TEST_P(IdxTest, WrongImageSizeNamesFile) {
  const std::string path =
      Write("images_4x2", IdxBytes(kIdxImagesMagic, {kCount, kCols, kRows}, Pixels()));
  absl::StatusOr<IdxImages> images = ReadIdxImages(path, SmallOptions());
  EXPECT_EQ(images.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(images.status().message(),
              AllOf(HasSubstr(path), HasSubstr("4x2 images, expected 2x4")));
}

INSTANTIATE_TEST_SUITE_P(PlainAndGzip, IdxTest,
                         ::testing::Values(Compression::kPlain, Compression::kGzip),
                         [](const ::testing::TestParamInfo<Compression>& info) {
                           return info.param == Compression::kGzip ? "Gzip" : "Plain";
                         });

TEST(IdxFileTest, MissingFileIsNotFoundAndNamed) {
  const std::string path = TempPath("does_not_exist-idx3-ubyte.gz");
  absl::StatusOr<IdxImages> images = ReadIdxImages(path, SmallOptions());
  EXPECT_EQ(images.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(images.status().message(), HasSubstr(path));
}

TEST(IdxFileTest, TruncatedGzipStreamNamesFile) {
  const std::string whole = WriteIdxFile(TempPath("whole.gz"), ImagesBytes(), Compression::kGzip);
  ASSERT_FALSE(whole.empty());
  std::vector<uint8_t> compressed = ReadRaw(whole);
  ASSERT_GT(compressed.size(), 20u);
  compressed.resize(compressed.size() - 10);  // Loses the gzip trailer and some data.
  const std::string path = WriteIdxFile(TempPath("cut.gz"), compressed, Compression::kPlain);
  absl::StatusOr<IdxImages> images = ReadIdxImages(path, SmallOptions());
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(images.status().message(), AllOf(HasSubstr(path), HasSubstr("gzip")));
}

TEST(IdxFileTest, CorruptGzipStreamNamesFile) {
  const std::string whole = WriteIdxFile(TempPath("whole2.gz"), ImagesBytes(), Compression::kGzip);
  ASSERT_FALSE(whole.empty());
  std::vector<uint8_t> compressed = ReadRaw(whole);
  // Flip the bytes after the 10-byte gzip header: the deflate stream no longer decodes (or its
  // CRC no longer matches).
  for (size_t i = 10; i < compressed.size(); ++i) compressed[i] ^= 0x5a;
  const std::string path = WriteIdxFile(TempPath("corrupt.gz"), compressed, Compression::kPlain);
  absl::StatusOr<IdxImages> images = ReadIdxImages(path, SmallOptions());
  EXPECT_FALSE(images.ok());
  EXPECT_THAT(images.status().message(), HasSubstr(path));
}

}  // namespace
}  // namespace troupe::methods::data
