// DHKD (Dual-Head Knowledge Distillation; Yang et al., arXiv 2411.08937): the losses on logits
// (cross-entropy, softmax KD, BinaryKL, BinaryKL-Norm), the dual-head combination with and
// without PCGrad-style gradient alignment, and the per-loss gradient cosine on head and
// backbone parameters (the "mechanism test"). No model and no training loop. See
// shared/papers/dhkd.md and docs/methods.md.
//
//   absl::StatusOr<DualHeadLoss> loss = DualHead(main_logits, aux_logits, teacher_logits,
//                                                labels, DhkdOptions());
//   absl::StatusOr<std::vector<at::Tensor>> grads =
//       DualHeadGradients(*loss, parameters, /*align=*/true);   // then p.mutable_grad() = g
//   absl::StatusOr<GradientCosines> cosines =
//       GradientCosine(ce, binary_kl, head_parameters, backbone_parameters);
//
// Teacher logits are always detached here: no loss sends gradient to the teacher. Every
// function checks its inputs and returns InvalidArgument naming the input that is wrong.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "absl/status/statusor.h"

namespace troupe::methods::dhkd {

// DistillLoss picks the auxiliary head's loss against the teacher.
enum class DistillLoss {
  kBinaryKlNorm,  // DHKD's loss (the code's --distill dhkd)
  kBinaryKl,      // plain BinaryKL (arm 6 of the small experiment)
  kSoftmaxKd,     // Hinton KD, for comparison
};

// DhkdOptions holds DHKD's defaults: the CIFAR-100 column of shared/papers/dhkd.md section 3.
struct DhkdOptions {
  // gamma: weight of CE on the main head (1).
  double ce_weight = 1.0;
  // alpha: weight of the distillation loss on the auxiliary head (1 on CIFAR, 0.1 on ImageNet).
  double distill_weight = 1.0;
  // T of the distillation loss (2; the softmax-KD arm of the small experiment uses 4).
  double temperature = 2.0;
  DistillLoss distill = DistillLoss::kBinaryKlNorm;
  // Probabilities are clamped to [epsilon, 1 - epsilon] in BinaryKL(-Norm), as in the code.
  double epsilon = 1e-8;
};

// CrossEntropy is the mean cross-entropy of logits [B, C] against int64 labels [B].
absl::StatusOr<at::Tensor> CrossEntropy(const at::Tensor& logits, const at::Tensor& labels);

// SoftmaxKd is T^2 / B sum_b KL(softmax(t_b / T) || softmax(s_b / T)) (Hinton et al. 2015; the
// code's DistillKL), student and teacher logits [B, C].
absl::StatusOr<at::Tensor> SoftmaxKd(const at::Tensor& student, const at::Tensor& teacher,
                                     double temperature);

// BinaryKl is T^2 / B sum_{b,c} KL(Bern(sigma(t / T)) || Bern(sigma(s / T))), both
// probabilities clamped to [epsilon, 1 - epsilon] (so the gradient is 0 where clamped).
absl::StatusOr<at::Tensor> BinaryKl(const at::Tensor& student, const at::Tensor& teacher,
                                    double temperature, double epsilon = 1e-8);

// BinaryKlNorm is T^2 / B sum_{b,c} KL(Bern(1/2) || Bern(sigma((s - t) / T))), the probability
// clamped to [epsilon, 1 - epsilon]: a logit matcher equal to T^2 / B sum log cosh((s - t) / 2T)
// while unclamped, with gradient bounded by T / (2B) per logit.
absl::StatusOr<at::Tensor> BinaryKlNorm(const at::Tensor& student, const at::Tensor& teacher,
                                        double temperature, double epsilon = 1e-8);

// DualHeadLoss holds the terms of DHKD's loss; `ce` and `distill` are unweighted.
struct DualHeadLoss {
  at::Tensor total;    // gamma * ce + alpha * distill
  at::Tensor ce;       // CE(z_1, y)
  at::Tensor distill;  // options.distill(z_2, z^t)
  double ce_weight = 1.0;
  double distill_weight = 1.0;
};

// DualHead is L = gamma CE(z_1, y) + alpha L_distill(z_2, z^t): main-head logits z_1, auxiliary
// head logits z_2 and teacher logits z^t, all [B, C]. Passing the main head's logits as
// `aux_logits` gives the single-head failure case (CE + BinaryKL on one head).
absl::StatusOr<DualHeadLoss> DualHead(const at::Tensor& main_logits, const at::Tensor& aux_logits,
                                      const at::Tensor& teacher_logits, const at::Tensor& labels,
                                      const DhkdOptions& options = DhkdOptions());

// AlignGradients is the code's PCGrad step on per-parameter gradient lists: with g_ce and g_kd
// flattened over all parameters, if <g_kd, g_ce> < 0 then g_kd -= <g_kd, g_ce> / |g_ce|^2 g_ce;
// returns g_ce + g_kd per parameter. Undefined entries count as zeros. The lists must match in
// length and shapes.
absl::StatusOr<std::vector<at::Tensor>> AlignGradients(const std::vector<at::Tensor>& ce_grads,
                                                       const std::vector<at::Tensor>& kd_grads);

// DualHeadGradients returns the gradient to step with, one tensor per parameter (zeros where a
// loss does not reach it): without alignment the gradient of `total`; with it, AlignGradients of
// the gradients of gamma * ce and alpha * distill (the code's ga_backward on the weighted terms),
// taken with torch::autograd::grad. The graph is kept, and no parameter's .grad is touched.
absl::StatusOr<std::vector<at::Tensor>> DualHeadGradients(const DualHeadLoss& loss,
                                                          const std::vector<at::Tensor>& parameters,
                                                          bool align);

// GradientCosines: cosine similarity of two losses' gradients on two parameter groups. A
// cosine is 0 when either gradient on that group is zero (undefined there).
struct GradientCosines {
  double head = 0;
  double backbone = 0;
};

// GradientCosine computes grad(loss_a) and grad(loss_b) with torch::autograd::grad (keeping the
// graph, so the caller can still backward) and their cosine separately over the flattened head
// parameters and the flattened backbone parameters. Parameters a loss does not reach count as
// zero gradient. Neither group may be empty, and every parameter must require grad.
absl::StatusOr<GradientCosines> GradientCosine(const at::Tensor& loss_a, const at::Tensor& loss_b,
                                               const std::vector<at::Tensor>& head_parameters,
                                               const std::vector<at::Tensor>& backbone_parameters);

}  // namespace troupe::methods::dhkd
