// Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): 60000 training and 10000 test images of 28x28
// grey pixels in 10 classes, read from its four IDX files (plain or gzip).
//
// tools/setup.sh installs Debian's dataset-fashion-mnist, which puts the gzip files in
// /usr/share/datasets/fashion-mnist/. Another directory can be passed, or set once in the
// environment variable TROUPE_FASHION_MNIST.
//
//   absl::StatusOr<Dataset> train = LoadFashionMnist(DefaultFashionMnistDir(), Split::kTrain);
//   if (!train.ok()) return train.status();  // names the missing or bad file and the fix
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "methods/data/dataset.h"
#include "methods/data/idx.h"

namespace troupe::methods::data {

// kFashionMnistDefaultDir is where Debian's dataset-fashion-mnist installs the files.
inline constexpr char kFashionMnistDefaultDir[] = "/usr/share/datasets/fashion-mnist/";
// kFashionMnistDirEnv names the environment variable that overrides the default directory.
inline constexpr char kFashionMnistDirEnv[] = "TROUPE_FASHION_MNIST";

// Split is one of the dataset's two fixed parts.
enum class Split { kTrain, kTest };

// SplitName is "train" or "test".
const char* SplitName(Split split);

// DefaultFashionMnistDir is $TROUPE_FASHION_MNIST if set and not empty, else
// kFashionMnistDefaultDir.
std::string DefaultFashionMnistDir();

// LoadFashionMnist reads `split` from `dir`, which holds train-images-idx3-ubyte,
// train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each plain or
// with ".gz" (plain first). NotFound, naming the directory, the file and tools/setup.sh, when
// a file is missing; the errors of ReadIdxImages/ReadIdxLabels for a bad file; InvalidArgument
// naming both files when their counts differ.
absl::StatusOr<Dataset> LoadFashionMnist(const std::string& dir, Split split,
                                         const IdxOptions& options = IdxOptions());

}  // namespace troupe::methods::data
