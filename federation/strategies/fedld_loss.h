// FedLD's client-side margin-control loss (the released code's MarginalLogLoss;
// shared/papers/fedld.md, section 2): for batch logits Z [B, C] and P = softmax(Z) per row,
//
//   L = (1/B) sum_b CE(z_b, y_b) + lambda log(1 + ||P||_F^2)
//
// where ||P||_F is the Frobenius norm of the whole batch matrix, not a per-sample norm. The term
// penalizes peaked (over-confident) outputs. FedLD always uses it; lambda = 0 is plain
// cross-entropy.
//
//   absl::StatusOr<at::Tensor> loss = MarginControlLoss(logits, labels, FedLdLossOptions());
//   loss->backward();
#pragma once

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"

namespace troupe::federation::strategies {

// FedLdLossOptions holds the loss's weight.
struct FedLdLossOptions {
  // lambda, `--margin_loss_penalty`: 0.03 is the default of the released options.py; the
  // README's run uses 0.1. Record which one an experiment used.
  double margin_penalty = 0.03;
};

// MarginControlLoss returns the scalar loss above (differentiable, the dtype of `logits`).
// `logits` must be a floating-point [B, C] tensor with B, C >= 1, `labels` an int64 [B] tensor
// with values in [0, C), and margin_penalty finite and >= 0; otherwise InvalidArgument naming
// the input.
absl::StatusOr<at::Tensor> MarginControlLoss(const at::Tensor& logits, const at::Tensor& labels,
                                             const FedLdLossOptions& options);

}  // namespace troupe::federation::strategies
