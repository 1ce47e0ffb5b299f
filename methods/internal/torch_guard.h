// TorchGuarded runs LibTorch code that returns an absl::Status(Or) and turns a LibTorch
// exception (none is expected once the inputs are checked) into an InternalError naming the
// function, so the methods' libraries never let an exception cross their API.
//
//   return TorchGuarded("SlaLoss", [&]() -> absl::StatusOr<at::Tensor> { ... });
#pragma once

#include <c10/util/Exception.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

// ValueOrThrow unwraps a result inside a training loss callback, where an error can only be a
// bug (the inputs were checked when the recipe was made); the trainer turns the exception into
// an error naming the step.
template <typename T>
T ValueOrThrow(absl::StatusOr<T> result) {
  if (!result.ok()) throw std::invalid_argument(result.status().ToString());
  return *std::move(result);
}

}  // namespace troupe::methods::internal
