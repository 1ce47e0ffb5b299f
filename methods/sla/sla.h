// SLA (Self-supervised Label Augmentation; Lee, Hwang and Shin, ICML 2020): the math of the
// method and of its baselines, on logits, with no model and no training loop. See
// shared/papers/sla.md and docs/methods.md.
//
// Layout, as in the released code (hankook/SLA): a batch of B images becomes B * M rows,
// image-major, row b * M + j = t_j(x_b) (RotateBatch); the joint label (class y, transform j)
// is the column y * M + j of an N * M-way head (JointLabels). Single inference keeps rows and
// columns with j = 0 (`preds[::M, ::M]`), aggregated inference averages each view's own columns
// (`preds[j::M, j::M]`), logits not probabilities.
//
//   absl::StatusOr<at::Tensor> views = RotateBatch(images, /*num_transforms=*/4);
//   at::Tensor joint_logits = model(*views);                    // [B * 4, N * 4]
//   absl::StatusOr<at::Tensor> loss = SlaLoss(joint_logits, labels, 4);
//   absl::StatusOr<at::Tensor> scores = AggregatedLogits(joint_logits, 4);   // [B, N]
//
// Every function checks its inputs and returns InvalidArgument naming the input that is wrong
// (shape, dtype, a label out of range, M not dividing the rows, a temperature <= 0).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace troupe::methods::sla {

// SlaOptions holds SLA's defaults (shared/papers/sla.md, section 1, from the released code).
struct SlaOptions {
  // M: the `rotation` transformation, four quarter turns (k = 0..3). M = 2 is `rotation2`
  // (0 and 180 degrees).
  int64_t num_transforms = 4;
  // T of SLA+SD's distillation term: KL on logits / T, multiplied by T^2 (code default 1).
  double distill_temperature = 1.0;
  // beta of SLA+SD: weight of the extra head's cross-entropy (code default 1).
  double distill_ce_weight = 1.0;
};

// JointLabel is the flat index of the joint label (class, transform): class * M + transform.
int64_t JointLabel(int64_t label, int64_t transform, int64_t num_transforms);

// RotateBatch turns images [B, C, H, W] (H == W) into [B * M, C, H, W], row b * M + j being
// image b turned by j * 4 / M quarter turns counter-clockwise (torch::rot90 on dims 2, 3, the
// same turn as methods/data's Rot90). M must be 1, 2 or 4. All M views of an image stay in one
// batch, as BatchNorm needs.
absl::StatusOr<at::Tensor> RotateBatch(const at::Tensor& images, int64_t num_transforms);

// JointLabels turns class labels [B] (int64) into joint labels [B * M]: row b * M + j is
// labels[b] * M + j.
absl::StatusOr<at::Tensor> JointLabels(const at::Tensor& labels, int64_t num_transforms);

// RepeatLabels turns class labels [B] into [B * M]: row b * M + j is labels[b] (DA, MT).
absl::StatusOr<at::Tensor> RepeatLabels(const at::Tensor& labels, int64_t num_transforms);

// TransformLabels returns [batch_size * M] int64: row b * M + j is j (MT's self-supervised
// target).
absl::StatusOr<at::Tensor> TransformLabels(int64_t batch_size, int64_t num_transforms);

// BaselineLoss is the mean cross-entropy of logits [B, N] against labels [B].
absl::StatusOr<at::Tensor> BaselineLoss(const at::Tensor& logits, const at::Tensor& labels);

// DaLoss is L_DA = 1/M sum_j CE(u^T z_j, y): the mean cross-entropy over the B * M rows of
// class logits [B * M, N] (from RotateBatch's layout) against labels [B].
absl::StatusOr<at::Tensor> DaLoss(const at::Tensor& logits, const at::Tensor& labels,
                                  int64_t num_transforms);

// MtLoss is L_MT = 1/M sum_j [CE(u^T z_j, y) + CE(v^T z_j, j)]: class logits [B * M, N] and
// transform logits [B * M, M] from two heads, labels [B].
absl::StatusOr<at::Tensor> MtLoss(const at::Tensor& class_logits,
                                  const at::Tensor& transform_logits, const at::Tensor& labels,
                                  int64_t num_transforms);

// SlaLoss is L_SLA = 1/M sum_j -log P(y, j | x_j): the mean cross-entropy of joint logits
// [B * M, N * M] against JointLabels(labels) (the code's loss, without --with-large-loss).
absl::StatusOr<at::Tensor> SlaLoss(const at::Tensor& joint_logits, const at::Tensor& labels,
                                   int64_t num_transforms);

// SingleInferenceLogits (SLA+SI) is `preds[::M, ::M]`: from joint logits [B * M, N * M] of a
// rotated batch, the identity view's identity columns, [B, N]. Softmax over these N columns is
// P(i | x, j = 0), conditional on j = 0, not a marginal over the N * M outputs.
absl::StatusOr<at::Tensor> SingleInferenceLogits(const at::Tensor& joint_logits,
                                                 int64_t num_transforms);

// IdentityColumnLogits is `preds[:, ::M]`: the j = 0 columns, [R, N], of joint logits [R, N * M]
// from a forward pass over untransformed images only (SI at one pass per image). Unlike
// SingleInferenceLogits it keeps every row.
absl::StatusOr<at::Tensor> IdentityColumnLogits(const at::Tensor& joint_logits,
                                                int64_t num_transforms);

// AggregatedLogits (SLA+AG) is s = 1/M sum_j preds[j::M, j::M], [B, N]: each view scored by the
// columns of its own transformation, averaged as logits.
absl::StatusOr<at::Tensor> AggregatedLogits(const at::Tensor& joint_logits, int64_t num_transforms);

// SelfDistillationLoss holds the terms of SLA+SD's loss; `total` carries the gradient.
struct SelfDistillationLoss {
  at::Tensor total;    // sla + distill + beta * ce
  at::Tensor sla;      // L_SLA
  at::Tensor distill;  // T^2 KL(softmax(agg / T) || softmax(u / T)), batch mean, agg detached
  at::Tensor ce;       // CE(u, y), unweighted
};

// SelfDistillation is SLA+SD's loss: L_SLA + T^2 KL(P_agg || sigma(u^T z / T)) + beta CE(u, y),
// with P_agg = softmax(AggregatedLogits / T) detached. `head_logits` is the extra N-way head on
// the rotated batch, [B * M, N], of which only the untransformed rows (::M) are used, or on
// the untransformed images only, [B, N].
absl::StatusOr<SelfDistillationLoss> SelfDistillation(const at::Tensor& joint_logits,
                                                      const at::Tensor& head_logits,
                                                      const at::Tensor& labels,
                                                      const SlaOptions& options = SlaOptions());

}  // namespace troupe::methods::sla
