// Batches of a uint8 Dataset as normalized float tensors, in a seeded order with optional
// augmentation. Each batch is a pure function of (seed, epoch, batch index): the order of an
// epoch is a seeded shuffle and each batch's augmentation has its own seed, so a trainer that
// resumes at any step sees exactly the batches it would have seen without stopping.
//
//   BatchOptions options;
//   options.batch_size = 128;
//   options.augment = data::AugmentOptions();  // random pad-crop and flip
//   absl::StatusOr<Batcher> batcher = Batcher::Create(train, options);
//   for (int64_t i = 0; i < batcher->BatchesPerEpoch(); ++i) {
//     Batch batch = batcher->Get(epoch, i);  // images [N, 1, 28, 28] float, labels [N] int64
//   }
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "methods/data/augment.h"
#include "methods/data/dataset.h"

namespace troupe::methods::train {

// Fashion-MNIST's pixel mean and standard deviation on the [0, 1] scale, over the 60000
// training images (computed from the files of dataset-fashion-mnist: 0.28604, 0.35302).
inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;

// BatchOptions holds the Batcher's settings.
struct BatchOptions {
  int64_t batch_size = 128;
  // Shuffle each epoch (seeded); false keeps the dataset's order (evaluation).
  bool shuffle = true;
  // Drop the last batch of an epoch when it is smaller than batch_size.
  bool drop_last = false;
  // Random pad-crop and flip of every training image; nullopt: none.
  std::optional<data::AugmentOptions> augment;
  // Pixels become (p / 255 - mean) / std.
  float mean = kFashionMnistMean;
  float std = kFashionMnistStd;
  uint64_t seed = 0;
  // The images' strides. ChannelsLast (NHWC) holds the same bytes as NCHW for grey images, but
  // LibTorch's CPU convolution, batch norm and max pooling then run their channels-last kernels,
  // which train small_cnn about 1.5x faster (docs/results/methods.md, throughput).
  torch::MemoryFormat memory_format = torch::MemoryFormat::ChannelsLast;
};

// Batch is one batch: images [N, 1, rows, cols] float32, labels [N] int64, and the dataset
// indices they came from.
struct Batch {
  torch::Tensor images;
  torch::Tensor labels;
  std::vector<int64_t> indices;
};

// ImagesToTensor converts the images at `indices` to [N, 1, rows, cols] float32, normalized,
// with the strides of `memory_format` (the values are the same either way).
torch::Tensor ImagesToTensor(const data::Dataset& dataset, absl::Span<const int64_t> indices,
                             float mean = kFashionMnistMean, float std = kFashionMnistStd,
                             torch::MemoryFormat memory_format = torch::MemoryFormat::Contiguous);

// Batcher cuts a dataset into batches. It keeps a pointer to the dataset, which must outlive
// it. Not thread-safe (it caches the current epoch's order).
class Batcher {
 public:
  // Create checks the dataset (non-empty, square images when augmenting) and the options
  // (batch_size >= 1, std > 0, valid augment options); errors name the field.
  static absl::StatusOr<Batcher> Create(const data::Dataset& dataset, const BatchOptions& options);

  int64_t BatchesPerEpoch() const;
  // Get returns batch `index` (in [0, BatchesPerEpoch())) of epoch `epoch` (>= 0).
  Batch Get(int64_t epoch, int64_t index) const;
  // Order is the order of the dataset's indices in epoch `epoch`.
  const std::vector<int64_t>& Order(int64_t epoch) const;

  const BatchOptions& options() const { return options_; }
  const data::Dataset& dataset() const { return *dataset_; }

 private:
  Batcher(const data::Dataset& dataset, const BatchOptions& options)
      : dataset_(&dataset), options_(options) {}

  const data::Dataset* dataset_;
  BatchOptions options_;
  mutable int64_t order_epoch_ = -1;
  mutable std::vector<int64_t> order_;
};

// MixSeed derives an independent seed from a seed and two counters (SplitMix64 rounds).
uint64_t MixSeed(uint64_t seed, uint64_t a, uint64_t b);

}  // namespace troupe::methods::train
