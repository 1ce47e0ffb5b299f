#include "methods/train/batches.h"

#include <torch/torch.h>

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::methods::train {
namespace {

using ::testing::HasSubstr;

// SmallDataset has n 28x28 images; image i's pixels are all (i * 7) % 256 and its label i % 10.
data::Dataset SmallDataset(int n) {
  data::Dataset dataset;
  dataset.rows = dataset.cols = 28;
  dataset.num_classes = 10;
  for (int i = 0; i < n; ++i) {
    dataset.images.insert(dataset.images.end(), 28 * 28, static_cast<uint8_t>((i * 7) % 256));
    dataset.labels.push_back(static_cast<uint8_t>(i % 10));
  }
  return dataset;
}

TEST(BatchesTest, NormalizesPixels) {
  data::Dataset dataset;
  dataset.rows = dataset.cols = 2;
  dataset.num_classes = 10;
  dataset.images = {0, 255, 51, 0};
  dataset.labels = {3};
  torch::Tensor t = ImagesToTensor(dataset, {0});
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_NEAR(t[0][0][0][0].item<float>(), -kFashionMnistMean / kFashionMnistStd, 1e-5);
  EXPECT_NEAR(t[0][0][0][1].item<float>(), (1 - kFashionMnistMean) / kFashionMnistStd, 1e-5);
  EXPECT_NEAR(t[0][0][1][0].item<float>(), (0.2f - kFashionMnistMean) / kFashionMnistStd, 1e-5);
}

TEST(BatchesTest, EachEpochIsASeededPermutation) {
  data::Dataset dataset = SmallDataset(50);
  BatchOptions options;
  options.batch_size = 16;
  options.seed = 3;
  Batcher batcher = *Batcher::Create(dataset, options);
  ASSERT_EQ(batcher.BatchesPerEpoch(), 4);
  std::vector<int64_t> seen;
  for (int64_t i = 0; i < 4; ++i) {
    Batch batch = batcher.Get(0, i);
    EXPECT_EQ(batch.images.size(0), i < 3 ? 16 : 2);
    for (size_t j = 0; j < batch.indices.size(); ++j) {
      EXPECT_EQ(batch.labels[j].item<int64_t>(), batch.indices[j] % 10);
    }
    seen.insert(seen.end(), batch.indices.begin(), batch.indices.end());
  }
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 50u);
  const std::vector<int64_t> epoch0 = batcher.Order(0);  // a copy: Order returns its cache
  EXPECT_NE(epoch0, batcher.Order(1));

  Batcher same = *Batcher::Create(dataset, options);
  EXPECT_EQ(same.Order(1), batcher.Order(1));
  options.seed = 4;
  Batcher other = *Batcher::Create(dataset, options);
  EXPECT_NE(other.Order(1), batcher.Order(1));

  options.drop_last = true;
  EXPECT_EQ(Batcher::Create(dataset, options)->BatchesPerEpoch(), 3);
  options.shuffle = false;
  EXPECT_EQ(Batcher::Create(dataset, options)->Get(2, 1).indices[0], 16);
}

TEST(BatchesTest, AugmentedBatchesDependOnlyOnEpochAndIndex) {
  data::Dataset dataset = SmallDataset(40);
  // Non-uniform images, so that crops and flips change them.
  for (size_t p = 0; p < dataset.images.size(); ++p) dataset.images[p] = (p * 13) % 251;
  BatchOptions options;
  options.batch_size = 8;
  options.augment = data::AugmentOptions();
  Batcher batcher = *Batcher::Create(dataset, options);
  Batch late = batcher.Get(2, 3);
  Batch early = batcher.Get(0, 0);
  Batcher fresh = *Batcher::Create(dataset, options);
  EXPECT_TRUE(torch::equal(fresh.Get(0, 0).images, early.images));
  EXPECT_TRUE(torch::equal(fresh.Get(2, 3).images, late.images));
  // Augmentation changed something.
  EXPECT_FALSE(torch::equal(late.images, ImagesToTensor(dataset, late.indices)));
}

TEST(BatchesTest, ChannelsLastBatchesHoldTheSameValues) {
  data::Dataset dataset = SmallDataset(50);
  BatchOptions options;
  options.batch_size = 16;
  options.augment = data::AugmentOptions();
  Batcher channels_last = *Batcher::Create(dataset, options);
  options.memory_format = torch::MemoryFormat::Contiguous;
  Batcher contiguous = *Batcher::Create(dataset, options);
  const Batch nhwc = channels_last.Get(1, 2);
  const Batch nchw = contiguous.Get(1, 2);
  // Grey images: the same bytes, but strides that send LibTorch to its channels-last kernels.
  EXPECT_EQ(nhwc.images.suggest_memory_format(), torch::MemoryFormat::ChannelsLast);
  EXPECT_EQ(nchw.images.suggest_memory_format(), torch::MemoryFormat::Contiguous);
  EXPECT_TRUE(torch::equal(nhwc.images, nchw.images));
  EXPECT_TRUE(torch::equal(nhwc.labels, nchw.labels));
}

TEST(BatchesTest, BadOptionsAreErrorsNamingThem) {
  data::Dataset dataset = SmallDataset(10);
  BatchOptions options;
  options.batch_size = 0;
  EXPECT_THAT(Batcher::Create(dataset, options).status().message(), HasSubstr("batch_size is 0"));
  options.batch_size = 20;
  options.drop_last = true;
  EXPECT_THAT(Batcher::Create(dataset, options).status().message(), HasSubstr("drop_last"));
  options = BatchOptions();
  options.augment = data::AugmentOptions();
  options.augment->side = 32;
  EXPECT_THAT(Batcher::Create(dataset, options).status().message(), HasSubstr("28x28"));
  EXPECT_THAT(Batcher::Create(data::Dataset(), BatchOptions()).status().message(),
              HasSubstr("empty"));
  options = BatchOptions();
  options.memory_format = torch::MemoryFormat::ChannelsLast3d;
  EXPECT_THAT(Batcher::Create(dataset, options).status().message(), HasSubstr("memory_format"));
}

}  // namespace
}  // namespace troupe::methods::train
