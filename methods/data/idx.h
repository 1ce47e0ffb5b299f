// Readers for IDX files, the format of MNIST and Fashion-MNIST: a big-endian magic number
// (0x0000 0x08=unsigned byte, then the number of dimensions), one big-endian uint32 per
// dimension, then the bytes. Files may be plain or gzip-compressed; zlib reads both.
//
// Everything is validated: the magic, the dimensions, that the byte count matches the header
// exactly (no truncated or trailing data) and that labels are < num_classes. Each error is an
// absl::Status that names the file, what is wrong and what to do.
//
//   absl::StatusOr<IdxImages> images = ReadIdxImages("train-images-idx3-ubyte.gz", IdxOptions());
//   absl::StatusOr<std::vector<uint8_t>> labels =
//       ReadIdxLabels("train-labels-idx1-ubyte.gz", IdxOptions());
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace troupe::methods::data {

// kIdxImagesMagic is the magic of unsigned-byte images with 3 dimensions [n, rows, cols].
inline constexpr uint32_t kIdxImagesMagic = 0x00000803;
// kIdxLabelsMagic is the magic of unsigned-byte labels with 1 dimension [n].
inline constexpr uint32_t kIdxLabelsMagic = 0x00000801;

// IdxOptions is what the files must hold. The defaults are Fashion-MNIST's (Xiao, Rasul and
// Vollgraf 2017, "Fashion-MNIST", Section 2): 28x28 grey images, 10 classes.
struct IdxOptions {
  int rows = 28;
  int cols = 28;
  int num_classes = 10;
};

// IdxImages is the content of an images file: `count` images of rows x cols pixels, row-major,
// one after the other.
struct IdxImages {
  int64_t count = 0;
  int rows = 0;
  int cols = 0;
  std::vector<uint8_t> pixels;
};

// ReadIdxImages reads an images file (magic 0x00000803) whose images are options.rows x
// options.cols. NotFound if the file does not exist; InvalidArgument if it is not such a file;
// DataLoss if it is truncated, has trailing bytes or its gzip stream is damaged.
absl::StatusOr<IdxImages> ReadIdxImages(const std::string& path, const IdxOptions& options);

// ReadIdxLabels reads a labels file (magic 0x00000801) whose labels are < options.num_classes.
// Errors as ReadIdxImages.
absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::string& path,
                                                   const IdxOptions& options);

}  // namespace troupe::methods::data
