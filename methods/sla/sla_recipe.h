// SLA's experiment arms as trainer recipes (methods/train/trainer.h): for each arm, the heads
// the model needs, the training loss and the test-time scores. Training SLA and SLA+SD gives
// several inference modes at once: SLA's run is scored as SI and AG, SLA+SD's as SI, AG and SD.
//
//   absl::StatusOr<train::Recipe> recipe = MakeRecipe(Arm::kSla, /*num_classes=*/10);
//   model_options.heads = recipe->heads;                         // {"joint", 40}
//   Trainer::Create(model, train, &test, options, recipe->loss, recipe->scores);
//   // test accuracy is logged as accuracy_si and accuracy_ag
//
// Arms (shared/papers/sla.md, section 4), every one on the same base augmentation:
//   baseline  CE on the images                       scores: main
//   da        CE on all M rotations (L_DA)           scores: main (unrotated images)
//   mt        L_DA + CE of a rotation head (L_MT)    scores: main
//   sla       L_SLA on the joint head (N * M)        scores: si, ag
//   sla_sd    L_SLA + SD into an extra N-way head    scores: si, ag, sd
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "methods/sla/sla.h"
#include "methods/train/trainer.h"

namespace troupe::methods::sla {

enum class Arm { kBaseline, kDa, kMt, kSla, kSlaSd };

// ParseArm reads "baseline", "da", "mt", "sla" or "sla_sd"; anything else is InvalidArgument
// listing them.
absl::StatusOr<Arm> ParseArm(const std::string& name);
std::string ArmName(Arm arm);

// MakeRecipe returns the arm's heads, loss and scores for `num_classes` classes. The options'
// M must be 2 or 4 (rotations), their temperature and weight > 0.
absl::StatusOr<train::Recipe> MakeRecipe(Arm arm, int64_t num_classes,
                                         const SlaOptions& options = SlaOptions());

}  // namespace troupe::methods::sla
