// The only translation unit of federation/strategies/ that includes LibTorch (its headers
// compile slowly).
#include "federation/strategies/fedld_loss.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace troupe::federation::strategies {
namespace {

constexpr const char* kFunction = "MarginControlLoss";

std::string Shape(const at::Tensor& tensor) {
  std::string text = "[";
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    absl::StrAppend(&text, d == 0 ? "" : ", ", tensor.size(d));
  }
  return text + "]";
}

absl::Status CheckInputs(const at::Tensor& logits, const at::Tensor& labels,
                         const FedLdLossOptions& options) {
  if (!std::isfinite(options.margin_penalty) || options.margin_penalty < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": margin_penalty is ", options.margin_penalty,
        "; it must be finite and >= 0 (0.03 is the released default, 0.1 the README's run)"));
  }
  if (!logits.defined() || logits.dim() != 2 || logits.size(0) < 1 || logits.size(1) < 1 ||
      !logits.is_floating_point()) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": logits ",
        logits.defined() ? absl::StrCat("have shape ", Shape(logits), " and dtype ",
                                        std::string(c10::toString(logits.scalar_type())))
                         : std::string("are undefined"),
        "; pass a floating-point [batch, classes] tensor with batch, classes >= 1"));
  }
  if (!labels.defined() || labels.dim() != 1 || labels.scalar_type() != at::kLong ||
      labels.size(0) != logits.size(0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": labels ",
        labels.defined() ? absl::StrCat("have shape ", Shape(labels), " and dtype ",
                                        std::string(c10::toString(labels.scalar_type())))
                         : std::string("are undefined"),
        "; pass an int64 [", logits.size(0), "] tensor, one label per logits row"));
  }
  const int64_t low = labels.min().item<int64_t>();
  const int64_t high = labels.max().item<int64_t>();
  if (low < 0 || high >= logits.size(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFunction, ": labels hold ", low < 0 ? low : high, ", outside [0, ",
                     logits.size(1), ") (the classes the logits have)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<at::Tensor> MarginControlLoss(const at::Tensor& logits, const at::Tensor& labels,
                                             const FedLdLossOptions& options) {
  if (absl::Status status = CheckInputs(logits, labels, options); !status.ok()) return status;
  try {
    const at::Tensor cross_entropy = torch::nll_loss(torch::log_softmax(logits, 1), labels);
    const at::Tensor probabilities = torch::softmax(logits, 1);
    const at::Tensor squared_norm = probabilities.pow(2).sum();  // ||P||_F^2 over the batch
    return cross_entropy + options.margin_penalty * torch::log1p(squared_norm);
  } catch (const c10::Error& error) {
    return absl::InternalError(
        absl::StrCat(kFunction, ": LibTorch failed: ", error.what_without_backtrace()));
  }
}

}  // namespace troupe::federation::strategies
