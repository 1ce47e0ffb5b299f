#include "actors/torch_threads.h"

#include <ATen/Parallel.h>

#include <exception>

#include "absl/strings/str_cat.h"

namespace troupe::actors {

absl::Status SetTorchThreads(int threads) {
  if (threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("torch_threads must be at least 1, got ", threads));
  }
  try {
    at::set_num_threads(threads);
    // The inter-op pool can only be sized before its first use; later calls keep the size.
    static const bool interop_sized = [] {
      at::set_num_interop_threads(1);
      return true;
    }();
    static_cast<void>(interop_sized);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot size LibTorch's thread pools: ", e.what()));
  }
  return absl::OkStatus();
}

int TorchThreads() { return at::get_num_threads(); }

}  // namespace troupe::actors
