#include "methods/data/idx.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace troupe::methods::data {
namespace {

// How much one gzread call asks for; gzread takes an unsigned int length.
constexpr unsigned kReadChunkBytes = 1 << 20;
constexpr int64_t kMagicBytes = 4;
constexpr int64_t kDimensionBytes = 4;

constexpr char kDamagedFix[] =
    "replace it with an intact copy (Fashion-MNIST: sudo apt-get install --reinstall "
    "dataset-fashion-mnist)";

// ReadWholeFile returns the file's bytes, decompressed if it is gzip (zlib passes plain files
// through unchanged).
absl::StatusOr<std::vector<uint8_t>> ReadWholeFile(const std::string& path) {
  errno = 0;
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat("IDX file ", path, " does not exist"));
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "IDX file ", path, " cannot be opened: ", error != 0 ? std::strerror(error) : "zlib",
        "; check the path and its permissions"));
  }
  std::vector<uint8_t> bytes;
  while (true) {
    const size_t old_size = bytes.size();
    bytes.resize(old_size + kReadChunkBytes);
    const int read = gzread(file, bytes.data() + old_size, kReadChunkBytes);
    if (read < 0) {
      int zlib_error = Z_OK;
      const std::string message = gzerror(file, &zlib_error);
      gzclose(file);
      return absl::DataLossError(absl::StrCat("IDX file ", path, " cannot be read: ", message,
                                              " (a damaged or truncated gzip stream); ",
                                              kDamagedFix));
    }
    bytes.resize(old_size + static_cast<size_t>(read));
    if (read == 0) break;
  }
  // A gzip stream cut short ends the reads without an error from gzread; gzerror reports it.
  int zlib_error = Z_OK;
  const std::string message = gzerror(file, &zlib_error);
  gzclose(file);
  if (zlib_error != Z_OK) {
    return absl::DataLossError(absl::StrCat("IDX file ", path, " cannot be read: ", message,
                                            " (a damaged or truncated gzip stream); ",
                                            kDamagedFix));
  }
  return bytes;
}

uint32_t BigEndianAt(const std::vector<uint8_t>& bytes, int64_t offset) {
  return (uint32_t{bytes[offset]} << 24) | (uint32_t{bytes[offset + 1]} << 16) |
         (uint32_t{bytes[offset + 2]} << 8) | uint32_t{bytes[offset + 3]};
}

// Parsed is an IDX file split into its dimensions and its data.
struct Parsed {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Parse checks the magic and that the data is exactly the product of the dimensions.
absl::StatusOr<Parsed> Parse(const std::string& path, std::vector<uint8_t> bytes,
                             uint32_t expected_magic, const char* what) {
  const int64_t num_dims = expected_magic & 0xff;
  const int64_t header_bytes = kMagicBytes + num_dims * kDimensionBytes;
  if (static_cast<int64_t>(bytes.size()) < kMagicBytes) {
    return absl::DataLossError(absl::StrFormat(
        "IDX file %s has %d bytes, too few for a magic number; it is truncated or empty: %s", path,
        bytes.size(), kDamagedFix));
  }
  const uint32_t magic = BigEndianAt(bytes, 0);
  if (magic != expected_magic) {
    std::string hint;
    if (magic == kIdxImagesMagic || magic == kIdxLabelsMagic) {
      hint = magic == kIdxImagesMagic ? " (it is an images file: are the paths swapped?)"
                                      : " (it is a labels file: are the paths swapped?)";
    }
    return absl::InvalidArgumentError(
        absl::StrFormat("IDX file %s has magic number 0x%08x, expected 0x%08x (%s)%s; pass an "
                        "IDX %s file or %s",
                        path, magic, expected_magic, what, hint, what, kDamagedFix));
  }
  if (static_cast<int64_t>(bytes.size()) < header_bytes) {
    return absl::DataLossError(absl::StrFormat(
        "IDX file %s has %d bytes, fewer than its %d-byte header; it is truncated: %s", path,
        bytes.size(), header_bytes, kDamagedFix));
  }
  Parsed parsed;
  // Three 32-bit dimensions multiply to at most 2^96: absl::uint128 holds any header's claim.
  absl::uint128 data_bytes = 1;
  for (int64_t d = 0; d < num_dims; ++d) {
    parsed.dims.push_back(BigEndianAt(bytes, kMagicBytes + d * kDimensionBytes));
    data_bytes *= static_cast<uint64_t>(parsed.dims.back());
  }
  const absl::uint128 actual = static_cast<uint64_t>(bytes.size() - header_bytes);
  if (actual != data_bytes) {
    return absl::DataLossError(absl::StrFormat(
        "IDX file %s: its header declares %d data bytes (dimensions %s) but it holds %d; it is "
        "%s: %s",
        path, data_bytes, absl::StrJoin(parsed.dims, "x"), actual,
        actual < data_bytes ? "truncated" : "followed by trailing bytes", kDamagedFix));
  }
  bytes.erase(bytes.begin(), bytes.begin() + header_bytes);
  parsed.data = std::move(bytes);
  return parsed;
}

}  // namespace

absl::StatusOr<IdxImages> ReadIdxImages(const std::string& path, const IdxOptions& options) {
  absl::StatusOr<std::vector<uint8_t>> bytes = ReadWholeFile(path);
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<Parsed> parsed =
      Parse(path, *std::move(bytes), kIdxImagesMagic, "unsigned-byte images [n, rows, cols]");
  if (!parsed.ok()) return parsed.status();
  if (parsed->dims[1] != options.rows || parsed->dims[2] != options.cols) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "IDX file %s holds %dx%d images, expected %dx%d; pass the file of the dataset that "
        "has %dx%d images or set IdxOptions::rows/cols",
        path, parsed->dims[1], parsed->dims[2], options.rows, options.cols, options.rows,
        options.cols));
  }
  IdxImages images;
  images.count = parsed->dims[0];
  images.rows = options.rows;
  images.cols = options.cols;
  images.pixels = std::move(parsed->data);
  return images;
}

absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::string& path,
                                                   const IdxOptions& options) {
  absl::StatusOr<std::vector<uint8_t>> bytes = ReadWholeFile(path);
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<Parsed> parsed =
      Parse(path, *std::move(bytes), kIdxLabelsMagic, "unsigned-byte labels [n]");
  if (!parsed.ok()) return parsed.status();
  for (size_t i = 0; i < parsed->data.size(); ++i) {
    if (parsed->data[i] >= options.num_classes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "IDX file %s: label %d (index %d) is not below the %d classes; pass the labels of a "
          "%d-class dataset or set IdxOptions::num_classes: %s",
          path, parsed->data[i], i, options.num_classes, options.num_classes, kDamagedFix));
    }
  }
  return std::move(parsed->data);
}

}  // namespace troupe::methods::data
