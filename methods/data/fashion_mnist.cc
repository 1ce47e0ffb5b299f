#include "methods/data/fashion_mnist.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace troupe::methods::data {
namespace {

constexpr char kGzipSuffix[] = ".gz";
constexpr char kSetupFix[] =
    "run tools/setup.sh (it installs Debian's dataset-fashion-mnist into "
    "/usr/share/datasets/fashion-mnist/), or pass the directory that holds the files, or set "
    "TROUPE_FASHION_MNIST to it";

// FindFile returns dir/name if it exists, else dir/name.gz if that exists.
absl::StatusOr<std::string> FindFile(const std::string& dir, const std::string& name) {
  const std::filesystem::path plain = std::filesystem::path(dir) / name;
  const std::filesystem::path gzip = std::filesystem::path(dir) / (name + kGzipSuffix);
  std::error_code error;
  if (std::filesystem::exists(plain, error)) return plain.string();
  if (std::filesystem::exists(gzip, error)) return gzip.string();
  return absl::NotFoundError(absl::StrCat(
      "Fashion-MNIST: neither ", plain.string(), " nor ", gzip.string(), " exists (directory ", dir,
      std::filesystem::is_directory(dir, error) ? "" : ", which does not exist", "); ", kSetupFix));
}

// Prefixed keeps `status`'s code and puts "Fashion-MNIST <split>: " before its message.
absl::Status Prefixed(const absl::Status& status, Split split) {
  return absl::Status(status.code(),
                      absl::StrCat("Fashion-MNIST ", SplitName(split), ": ", status.message()));
}

}  // namespace

const char* SplitName(Split split) { return split == Split::kTrain ? "train" : "test"; }

std::string DefaultFashionMnistDir() {
  const char* from_environment = std::getenv(kFashionMnistDirEnv);
  if (from_environment != nullptr && from_environment[0] != '\0') return from_environment;
  return kFashionMnistDefaultDir;
}

absl::StatusOr<Dataset> LoadFashionMnist(const std::string& dir, Split split,
                                         const IdxOptions& options) {
  // The original distribution's names (github.com/zalandoresearch/fashion-mnist).
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  absl::StatusOr<std::string> images_path = FindFile(dir, prefix + "-images-idx3-ubyte");
  if (!images_path.ok()) return images_path.status();
  absl::StatusOr<std::string> labels_path = FindFile(dir, prefix + "-labels-idx1-ubyte");
  if (!labels_path.ok()) return labels_path.status();

  absl::StatusOr<IdxImages> images = ReadIdxImages(*images_path, options);
  if (!images.ok()) return Prefixed(images.status(), split);
  absl::StatusOr<std::vector<uint8_t>> labels = ReadIdxLabels(*labels_path, options);
  if (!labels.ok()) return Prefixed(labels.status(), split);
  if (images->count != static_cast<int64_t>(labels->size())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Fashion-MNIST %s: %s holds %d images but %s holds %d labels; the two files must come "
        "from the same split and release: %s",
        SplitName(split), *images_path, images->count, *labels_path, labels->size(), kSetupFix));
  }
  Dataset dataset;
  dataset.rows = images->rows;
  dataset.cols = images->cols;
  dataset.num_classes = options.num_classes;
  dataset.images = std::move(images->pixels);
  dataset.labels = *std::move(labels);
  return dataset;
}

}  // namespace troupe::methods::data
