// Dataset: labelled grey images in plain vectors, with no LibTorch, so that data code compiles
// fast; conversion to tensors happens in the one translation unit that trains.
//
//   absl::StatusOr<Dataset> train = LoadFashionMnist(DefaultFashionMnistDir(), Split::kTrain);
//   absl::Span<const uint8_t> first = train->Image(0);  // rows * cols pixels, row-major
//   Dataset client = Select(*train, partition[client_id]);
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace troupe::methods::data {

// Dataset holds size() images of rows x cols uint8 pixels (0 = background), one after the
// other, row-major, and their labels in [0, num_classes).
struct Dataset {
  int rows = 0;
  int cols = 0;
  int num_classes = 0;
  std::vector<uint8_t> images;
  std::vector<uint8_t> labels;

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t PixelsPerImage() const { return int64_t{rows} * cols; }
  // Image is image i's pixels; i must be in [0, size()).
  absl::Span<const uint8_t> Image(int64_t i) const {
    return absl::MakeConstSpan(images).subspan(i * PixelsPerImage(), PixelsPerImage());
  }
};

// Select returns the images and labels at `indices` (in that order, repeats allowed); every
// index must be in [0, dataset.size()).
Dataset Select(const Dataset& dataset, absl::Span<const int64_t> indices);

}  // namespace troupe::methods::data
