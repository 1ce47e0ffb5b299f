// TorchGuarded runs LibTorch code that returns an absl::Status(Or) and turns a LibTorch
// exception (none is expected once the inputs are checked) into an InternalError naming the
// function, so the methods' libraries never let an exception cross their API.
//
//   return TorchGuarded("SlaLoss", [&]() -> absl::StatusOr<at::Tensor> { ... });
#pragma once

#include <c10/util/Exception.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace troupe::methods::internal {

template <typename Function>
auto TorchGuarded(const char* function, Function body) -> decltype(body()) {
  try {
    return body();
  } catch (const c10::Error& error) {
    return absl::InternalError(
        absl::StrCat(function, ": LibTorch failed: ", error.what_without_backtrace()));
  }
}

}  // namespace troupe::methods::internal
