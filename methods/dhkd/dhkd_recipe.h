// DHKD's experiment arms as trainer recipes (methods/train/trainer.h): a student's heads, loss
// and scores for each arm of shared/papers/dhkd.md section 5, the teacher's logits per batch,
// and the mechanism test (the cosine between the CE and distillation gradients on the head's
// and on the backbone's parameters) logged to a CSV file while the student trains.
//
//   absl::StatusOr<TeacherFn> teacher = MakeTeacher(teacher_model, &train);  // precomputed
//   ArmOptions arm;  // DHKD, BinaryKL-Norm, gradient alignment, a linear auxiliary head
//   arm.cosine_log = "/tmp/run/gradient_cosine.csv";
//   absl::StatusOr<train::Recipe> recipe = MakeRecipe(arm, /*num_classes=*/10, *teacher);
//   model_options.heads = recipe->heads;                        // main (+ aux for dhkd)
//   Trainer::Create(student, train, &test, options, recipe->loss, recipe->scores);
//
// Arms (every one scored on the main head only; the auxiliary head is discarded):
//   ce       gamma CE(z1, y)
//   kd       gamma CE(z1, y) + alpha softmax-KD(z1, zt)          (Hinton; T = 4 in the notes)
//   bkl      alpha BinaryKL(z1, zt) alone
//   ce_bkl   gamma CE(z1, y) + alpha BinaryKL(z1, zt): one head, the failure case
//   dhkd     gamma CE(z1, y) + alpha L(z2, zt), L = BinaryKL-Norm (or BinaryKL), on an
//            auxiliary head z2, linear or nonlinear, with or without gradient alignment
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "methods/data/dataset.h"
#include "methods/dhkd/dhkd.h"
#include "methods/train/trainer.h"

namespace troupe::methods::dhkd {

enum class Arm { kCe, kKd, kBkl, kCeBkl, kDhkd };

// ParseArm reads "ce", "kd", "bkl", "ce_bkl" or "dhkd"; anything else is InvalidArgument
// listing them.
absl::StatusOr<Arm> ParseArm(const std::string& name);
std::string ArmName(Arm arm);

// ArmOptions configures one arm.
struct ArmOptions {
  Arm arm = Arm::kDhkd;
  // gamma, alpha and T; `distill` picks the dhkd arm's loss (BinaryKL-Norm or BinaryKL; the
  // kd, bkl and ce_bkl arms fix their own).
  DhkdOptions dhkd;
  // dhkd arm: PCGrad-style gradient alignment (the code's --ga; on in the CIFAR defaults).
  bool align = true;
  // dhkd arm: hidden width of the auxiliary head g2 (0: linear; 200: the CIFAR nonlinear head).
  int64_t aux_hidden = 0;
  // Mechanism test, for the arms with two losses (kd, ce_bkl, dhkd): every cosine_every steps
  // (0: never), append "step,epoch,head_cosine,backbone_cosine" to cosine_log. For ce_bkl and
  // kd the head is the main head, shared by both losses; for dhkd it is both heads, where the
  // cosine is 0 by construction (each loss reaches only its own head).
  int64_t cosine_every = 100;
  std::string cosine_log;
};

// TeacherFn gives the teacher's logits [B, C] (no gradient) for a training batch.
using TeacherFn = std::function<torch::Tensor(const train::Batch& batch)>;

// MakeTeacher puts `teacher` in eval mode. With `precompute_over` (training batches that are not
// augmented) it runs the teacher once over that dataset and looks each batch's rows up by
// index; without, it runs the teacher on every batch.
absl::StatusOr<TeacherFn> MakeTeacher(train::Classifier teacher,
                                      const data::Dataset* precompute_over);

// MakeRecipe returns the arm's heads, loss and scores. `teacher` may be null only for the ce
// arm. Options out of range (weights < 0, T <= 0, cosine_every < 0 or without a log file) are
// InvalidArgument naming them.
absl::StatusOr<train::Recipe> MakeRecipe(const ArmOptions& options, int64_t num_classes,
                                         TeacherFn teacher);

}  // namespace troupe::methods::dhkd
