#include "methods/data/dataset.h"

namespace troupe::methods::data {

Dataset Select(const Dataset& dataset, absl::Span<const int64_t> indices) {
  Dataset selected;
  selected.rows = dataset.rows;
  selected.cols = dataset.cols;
  selected.num_classes = dataset.num_classes;
  selected.images.reserve(indices.size() * dataset.PixelsPerImage());
  selected.labels.reserve(indices.size());
  for (const int64_t i : indices) {
    const absl::Span<const uint8_t> image = dataset.Image(i);
    selected.images.insert(selected.images.end(), image.begin(), image.end());
    selected.labels.push_back(dataset.labels[i]);
  }
  return selected;
}

}  // namespace troupe::methods::data
