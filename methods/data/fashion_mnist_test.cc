#include "methods/data/fashion_mnist.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "methods/data/dataset.h"
#include "methods/data/idx_test_files.h"

namespace troupe::methods::data {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kSide = 28;
constexpr int kPixels = kSide * kSide;

// MakeDir creates an empty directory under the test's temporary directory.
std::string MakeDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// WriteSplit writes `count` 28x28 images (image i is all i) with `labels`: images plain,
// labels gzip, as a mixed directory may hold them.
void WriteSplit(const std::string& dir, const std::string& prefix, uint32_t count,
                const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> pixels;
  for (uint32_t i = 0; i < count; ++i) pixels.insert(pixels.end(), kPixels, i);
  ASSERT_FALSE(WriteIdxFile(dir + "/" + prefix + "-images-idx3-ubyte",
                            IdxBytes(kIdxImagesMagic, {count, kSide, kSide}, pixels),
                            Compression::kPlain)
                   .empty());
  ASSERT_FALSE(
      WriteIdxFile(dir + "/" + prefix + "-labels-idx1-ubyte.gz",
                   IdxBytes(kIdxLabelsMagic, {static_cast<uint32_t>(labels.size())}, labels),
                   Compression::kGzip)
          .empty());
}

TEST(FashionMnistTest, LoadsBothSplitsPlainOrGzip) {
  const std::string dir = MakeDir("small");
  WriteSplit(dir, "train", 3, {7, 0, 9});
  WriteSplit(dir, "t10k", 2, {1, 1});

  absl::StatusOr<Dataset> train = LoadFashionMnist(dir, Split::kTrain);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->size(), 3);
  EXPECT_EQ(train->rows, kSide);
  EXPECT_EQ(train->cols, kSide);
  EXPECT_EQ(train->num_classes, 10);
  EXPECT_THAT(train->labels, ElementsAre(7, 0, 9));
  ASSERT_EQ(train->Image(2).size(), static_cast<size_t>(kPixels));
  EXPECT_EQ(train->Image(2)[0], 2);
  EXPECT_EQ(train->Image(2)[kPixels - 1], 2);

  absl::StatusOr<Dataset> test = LoadFashionMnist(dir, Split::kTest);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_THAT(test->labels, ElementsAre(1, 1));

  const std::vector<int64_t> picked = {2, 0, 2};
  const Dataset selected = Select(*train, picked);
  EXPECT_THAT(selected.labels, ElementsAre(9, 7, 9));
  EXPECT_EQ(selected.Image(1)[0], 0);
  EXPECT_EQ(selected.Image(2)[kPixels / 2], 2);
  EXPECT_EQ(selected.rows, kSide);
}

TEST(FashionMnistTest, MissingDatasetNamesPathAndSetup) {
  const std::string dir = ::testing::TempDir() + "/no_such_dir";
  absl::StatusOr<Dataset> train = LoadFashionMnist(dir, Split::kTrain);
  EXPECT_EQ(train.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(
      train.status().message(),
      AllOf(HasSubstr(dir), HasSubstr("train-images-idx3-ubyte.gz"), HasSubstr("does not exist"),
            HasSubstr("tools/setup.sh"), HasSubstr("TROUPE_FASHION_MNIST")));

  const std::string half = MakeDir("labels_missing");
  WriteSplit(half, "train", 1, {0});
  std::filesystem::remove(half + "/train-labels-idx1-ubyte.gz");
  train = LoadFashionMnist(half, Split::kTrain);
  EXPECT_EQ(train.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(train.status().message(), HasSubstr("train-labels-idx1-ubyte"));
}

TEST(FashionMnistTest, CountMismatchNamesBothFiles) {
  const std::string dir = MakeDir("mismatch");
  WriteSplit(dir, "t10k", 3, {1, 2});
  absl::StatusOr<Dataset> test = LoadFashionMnist(dir, Split::kTest);
  EXPECT_EQ(test.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(test.status().message(),
              AllOf(HasSubstr("t10k-images-idx3-ubyte"), HasSubstr("t10k-labels-idx1-ubyte.gz"),
                    HasSubstr("3 images"), HasSubstr("2 labels")));
}

TEST(FashionMnistTest, BadFileErrorNamesSplitAndFile) {
  const std::string dir = MakeDir("bad_label");
  WriteSplit(dir, "train", 2, {3, 10});
  absl::StatusOr<Dataset> train = LoadFashionMnist(dir, Split::kTrain);
  EXPECT_EQ(train.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(train.status().message(),
              AllOf(HasSubstr("Fashion-MNIST train"), HasSubstr("train-labels-idx1-ubyte.gz"),
                    HasSubstr("label 10")));
}

TEST(FashionMnistTest, EnvironmentOverridesDefaultDir) {
  ASSERT_EQ(unsetenv(kFashionMnistDirEnv), 0);
  EXPECT_EQ(DefaultFashionMnistDir(), kFashionMnistDefaultDir);
  ASSERT_EQ(setenv(kFashionMnistDirEnv, "/data/fmnist", /*overwrite=*/1), 0);
  EXPECT_EQ(DefaultFashionMnistDir(), "/data/fmnist");
  ASSERT_EQ(setenv(kFashionMnistDirEnv, "", /*overwrite=*/1), 0);
  EXPECT_EQ(DefaultFashionMnistDir(), kFashionMnistDefaultDir);
  ASSERT_EQ(unsetenv(kFashionMnistDirEnv), 0);
}

// The real dataset, when tools/setup.sh has installed it: the published sizes and class counts
// (Xiao et al. 2017: 60000 + 10000 images, every class equally often).
TEST(FashionMnistTest, RealDatasetHasPublishedSizes) {
  const std::string dir = kFashionMnistDefaultDir;
  if (!std::filesystem::exists(std::filesystem::path(dir) / "train-images-idx3-ubyte.gz") &&
      !std::filesystem::exists(std::filesystem::path(dir) / "train-images-idx3-ubyte")) {
    GTEST_SKIP() << "Fashion-MNIST is not installed in " << dir
                 << "; run tools/setup.sh (Debian's dataset-fashion-mnist) to test on it";
  }
  constexpr int kClasses = 10;
  for (const auto& [split, count] : {std::pair{Split::kTrain, 60000}, {Split::kTest, 10000}}) {
    absl::StatusOr<Dataset> dataset = LoadFashionMnist(dir, split);
    ASSERT_TRUE(dataset.ok()) << dataset.status();
    EXPECT_EQ(dataset->size(), count);
    EXPECT_EQ(dataset->images.size(), static_cast<size_t>(count) * kPixels);
    std::vector<int> per_class(kClasses, 0);
    for (const uint8_t label : dataset->labels) ++per_class[label];
    EXPECT_THAT(per_class, ::testing::Each(count / kClasses)) << SplitName(split);
    // Not all background: the images carry content.
    int64_t ink = 0;
    for (const uint8_t pixel : dataset->images) ink += pixel > 0;
    EXPECT_GT(ink, static_cast<int64_t>(dataset->images.size()) / 4);
  }
}

}  // namespace
}  // namespace troupe::methods::data
