#include "methods/train/batches.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace troupe::methods::train {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t MixSeed(uint64_t seed, uint64_t a, uint64_t b) {
  return SplitMix64(SplitMix64(SplitMix64(seed) ^ a) ^ b);
}

torch::Tensor ImagesToTensor(const data::Dataset& dataset, absl::Span<const int64_t> indices,
                             float mean, float std, torch::MemoryFormat memory_format) {
  const int64_t pixels = dataset.PixelsPerImage();
  // With one channel, NCHW and NHWC lay the pixels out alike: only the strides differ.
  torch::Tensor out =
      torch::empty({static_cast<int64_t>(indices.size()), 1, dataset.rows, dataset.cols},
                   torch::TensorOptions(torch::kFloat32).memory_format(memory_format));
  float* data = out.data_ptr<float>();
  const float scale = 1.0f / (255.0f * std), shift = mean / std;
  for (size_t i = 0; i < indices.size(); ++i) {
    absl::Span<const uint8_t> image = dataset.Image(indices[i]);
    for (int64_t p = 0; p < pixels; ++p) data[i * pixels + p] = image[p] * scale - shift;
  }
  return out;
}

absl::StatusOr<Batcher> Batcher::Create(const data::Dataset& dataset, const BatchOptions& options) {
  if (dataset.size() == 0) {
    return absl::InvalidArgumentError("the dataset is empty; there is nothing to batch");
  }
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchOptions.batch_size is ", options.batch_size, "; it must be >= 1"));
  }
  if (options.drop_last && options.batch_size > dataset.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BatchOptions.batch_size is ", options.batch_size, " with drop_last, but the dataset has ",
        dataset.size(), " images: every batch would be dropped; lower batch_size"));
  }
  if (options.memory_format != torch::MemoryFormat::Contiguous &&
      options.memory_format != torch::MemoryFormat::ChannelsLast) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchOptions.memory_format is ", c10::toString(options.memory_format),
                     "; use Contiguous or ChannelsLast"));
  }
  if (!(options.std > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchOptions.std is ", options.std, "; it must be > 0"));
  }
  if (options.augment.has_value()) {
    if (dataset.rows != dataset.cols || dataset.rows != options.augment->side) {
      return absl::InvalidArgumentError(
          absl::StrCat("augmentation is for ", options.augment->side, "x", options.augment->side,
                       " images but the dataset's are ", dataset.rows, "x", dataset.cols,
                       "; set BatchOptions.augment->side"));
    }
    absl::StatusOr<data::Augmenter> augmenter = data::Augmenter::Create(*options.augment, 0);
    if (!augmenter.ok()) return augmenter.status();
  }
  return Batcher(dataset, options);
}

int64_t Batcher::BatchesPerEpoch() const {
  const int64_t n = dataset_->size();
  return options_.drop_last ? n / options_.batch_size
                            : (n + options_.batch_size - 1) / options_.batch_size;
}

const std::vector<int64_t>& Batcher::Order(int64_t epoch) const {
  if (order_epoch_ != epoch) {
    order_.resize(dataset_->size());
    std::iota(order_.begin(), order_.end(), int64_t{0});
    if (options_.shuffle) {
      std::mt19937_64 random(MixSeed(options_.seed, 1, static_cast<uint64_t>(epoch)));
      std::shuffle(order_.begin(), order_.end(), random);
    }
    order_epoch_ = epoch;
  }
  return order_;
}

Batch Batcher::Get(int64_t epoch, int64_t index) const {
  const std::vector<int64_t>& order = Order(epoch);
  const int64_t begin = index * options_.batch_size;
  const int64_t end = std::min<int64_t>(begin + options_.batch_size, order.size());
  Batch batch;
  batch.indices.assign(order.begin() + begin, order.begin() + end);
  if (options_.augment.has_value()) {
    // Each batch has its own augmentation seed, so batch i of epoch e never depends on the
    // batches before it.
    data::Augmenter augmenter = *data::Augmenter::Create(
        *options_.augment, MixSeed(options_.seed, 2 + static_cast<uint64_t>(epoch), index));
    data::Dataset augmented;
    augmented.rows = dataset_->rows;
    augmented.cols = dataset_->cols;
    augmented.num_classes = dataset_->num_classes;
    augmented.images.reserve(batch.indices.size() * dataset_->PixelsPerImage());
    for (int64_t i : batch.indices) {
      std::vector<uint8_t> image = augmenter.Apply(dataset_->Image(i));
      augmented.images.insert(augmented.images.end(), image.begin(), image.end());
      augmented.labels.push_back(dataset_->labels[i]);
    }
    std::vector<int64_t> all(batch.indices.size());
    std::iota(all.begin(), all.end(), int64_t{0});
    batch.images =
        ImagesToTensor(augmented, all, options_.mean, options_.std, options_.memory_format);
  } else {
    batch.images = ImagesToTensor(*dataset_, batch.indices, options_.mean, options_.std,
                                  options_.memory_format);
  }
  batch.labels = torch::empty({static_cast<int64_t>(batch.indices.size())}, torch::kInt64);
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  for (size_t i = 0; i < batch.indices.size(); ++i) labels[i] = dataset_->labels[batch.indices[i]];
  return batch;
}

}  // namespace troupe::methods::train
