// Attack: one Byzantine worker behaviour chosen by name, so an experiment's configuration can say
// `attack = "alie"` and `f = 3`. A behaviour has two hooks a simulated worker calls each step:
// PoisonLabels on its batch labels before the backward pass (only label_flip changes them), and
// Forge on the gradients after it (label_flip sends its gradient unchanged).
//
//   AttackOptions options;
//   absl::StatusOr<std::unique_ptr<Attack>> attack = MakeAttack("alie", options);
//   // own: d x f, the Byzantine workers' gradients; honest: d x h, the honest ones this round.
//   absl::StatusOr<Eigen::MatrixXf> sent = (*attack)->Forge(own, honest);  // d x f
//
// An Attack keeps its random generator between steps (gaussian, drop), so a run owns one per
// experiment and a fixed seed reproduces the whole run.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "eigen3/Eigen/Core"
#include "federation/attacks/attacks.h"

namespace troupe::federation::attacks {

// AttackKind names each behaviour; AttackName gives its configuration name.
enum class AttackKind {
  kSignFlip,
  kGaussian,
  kAlie,
  kIpm,
  kDrop,
  kLabelFlip,
};

// AttackName is the name ParseAttackName accepts: "sign_flip", "gaussian", "alie", "ipm",
// "drop", "label_flip".
absl::string_view AttackName(AttackKind kind);

// ParseAttackName maps a name to its kind; the error lists the valid names.
absl::StatusOr<AttackKind> ParseAttackName(absl::string_view name);

// IsOmniscient says whether the attack reads the honest workers' gradients (alie, ipm).
bool IsOmniscient(AttackKind kind);

// AttackOptions holds every attack's parameters; each attack reads the ones it needs.
struct AttackOptions {
  // sign_flip: the scale s of -s * g; 10 is the reference's `reverse`.
  double sign_flip_scale = 10.0;
  // gaussian: the standard deviation of N(0, sigma^2). The notes give no value (the reference's
  // `random` draws U[0,1)); 1 is unit variance.
  double gaussian_sigma = 1.0;
  // alie: a fixed z; unset means Baruch et al.'s z from n = h + f and f (AlieZ). The reference's
  // `lie` fixes z = kAlieReferenceZ.
  std::optional<double> alie_z;
  // ipm: epsilon of -epsilon * mean; 0.1 is the reference's `empire` (Xie et al.'s small-epsilon
  // setting, which keeps the forged gradient close to the honest ones).
  double ipm_epsilon = 0.1;
  // drop: the fraction of coordinates zeroed; 0.1 is what the reference's `drop` meant to do.
  double drop_fraction = 0.1;
  // label_flip: the number of classes C of y -> C - 1 - y; 10 for CIFAR-10, the reference's main
  // dataset. A label >= C is an error, so a wrong C is caught at the first batch.
  int64_t num_classes = 10;
  // gaussian, drop: the seed of the attack's std::mt19937_64; 2021 is the reference's first
  // training seed (2021-2023).
  uint64_t seed = 2021;
};

// kAlieReferenceZ is the fixed z of the reference code's `lie` attack.
inline constexpr double kAlieReferenceZ = 0.21;

// Attack is what the f Byzantine workers do in one step.
class Attack {
 public:
  virtual ~Attack() = default;
  virtual AttackKind kind() const = 0;

  // PoisonLabels returns the labels a Byzantine worker trains its batch on; all but label_flip
  // return them unchanged.
  virtual absl::StatusOr<std::vector<int64_t>> PoisonLabels(absl::Span<const int64_t> labels);

  // Forge returns the d x f gradients the f Byzantine workers send. `own` (d x f, column j is
  // Byzantine worker j's gradient on its own, possibly poisoned, batch) always gives d and f;
  // its values are read by sign_flip, drop and label_flip. `honest` (d x h, the honest workers'
  // gradients of the round) is read only by the omniscient attacks (alie, ipm); others accept an
  // empty matrix. Errors name the input at fault.
  virtual absl::StatusOr<Eigen::MatrixXf> Forge(const GradientMatrix& own,
                                                const GradientMatrix& honest) = 0;
};

// MakeAttack builds the behaviour called `name` (see AttackName). Options the attack reads are
// checked here (a negative sigma, a drop fraction outside [0, 1], a non-positive scale or
// epsilon, num_classes < 2, a non-finite alie_z); bounds that depend on n and f are checked by
// Forge.
absl::StatusOr<std::unique_ptr<Attack>> MakeAttack(absl::string_view name,
                                                   const AttackOptions& options);

}  // namespace troupe::federation::attacks
