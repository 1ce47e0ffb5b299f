#include "federation/attacks/attack.h"

#include <array>
#include <cmath>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace troupe::federation::attacks {
namespace {

constexpr std::array<std::pair<AttackKind, absl::string_view>, 6> kNames = {{
    {AttackKind::kSignFlip, "sign_flip"},
    {AttackKind::kGaussian, "gaussian"},
    {AttackKind::kAlie, "alie"},
    {AttackKind::kIpm, "ipm"},
    {AttackKind::kDrop, "drop"},
    {AttackKind::kLabelFlip, "label_flip"},
}};

// kReferenceNames point the Flag Aggregator code's attack names to ours; they are not accepted
// as aliases because ours differ (`random` is U[0,1), `drop` and `lie` are broken there).
constexpr std::array<std::pair<absl::string_view, absl::string_view>, 4> kReferenceNames = {{
    {"reverse", " (the reference's `reverse` is sign_flip)"},
    {"random", " (the reference's `random`, U[0,1) noise, is closest to gaussian)"},
    {"lie", " (the reference's `lie` is alie with alie_z = 0.21)"},
    {"empire", " (the reference's `empire` is ipm)"},
}};

// CheckOptions checks the options `kind` reads, naming the AttackOptions field.
absl::Status CheckOptions(AttackKind kind, const AttackOptions& options) {
  switch (kind) {
    case AttackKind::kSignFlip:
      if (std::isfinite(options.sign_flip_scale) && options.sign_flip_scale > 0) break;
      return absl::InvalidArgumentError(
          absl::StrCat("sign_flip: AttackOptions::sign_flip_scale = ", options.sign_flip_scale,
                       "; pass a finite scale > 0 (the reference uses 10)"));
    case AttackKind::kGaussian:
      if (std::isfinite(options.gaussian_sigma) && options.gaussian_sigma >= 0) break;
      return absl::InvalidArgumentError(
          absl::StrCat("gaussian: AttackOptions::gaussian_sigma = ", options.gaussian_sigma,
                       "; pass a finite standard deviation >= 0"));
    case AttackKind::kAlie:
      if (!options.alie_z.has_value() || std::isfinite(*options.alie_z)) break;
      return absl::InvalidArgumentError(
          absl::StrCat("alie: AttackOptions::alie_z = ", *options.alie_z,
                       "; pass a finite z, or leave it unset for Baruch et al.'s z from n and f"));
    case AttackKind::kIpm:
      if (std::isfinite(options.ipm_epsilon) && options.ipm_epsilon > 0) break;
      return absl::InvalidArgumentError(
          absl::StrCat("ipm: AttackOptions::ipm_epsilon = ", options.ipm_epsilon,
                       "; pass a finite epsilon > 0 (the reference uses 0.1)"));
    case AttackKind::kDrop:
      if (options.drop_fraction >= 0 && options.drop_fraction <= 1) break;
      return absl::InvalidArgumentError(
          absl::StrCat("drop: AttackOptions::drop_fraction = ", options.drop_fraction,
                       "; pass a fraction of coordinates in [0, 1]"));
    case AttackKind::kLabelFlip:
      if (options.num_classes >= 2) break;
      return absl::InvalidArgumentError(
          absl::StrCat("label_flip: AttackOptions::num_classes = ", options.num_classes,
                       "; pass the dataset's number of classes, >= 2"));
  }
  return absl::OkStatus();
}

// WorkerAttack calls the function of attacks.h that `kind` names.
class WorkerAttack : public Attack {
 public:
  WorkerAttack(AttackKind kind, AttackOptions options)
      : kind_(kind), options_(std::move(options)), rng_(options_.seed) {}

  AttackKind kind() const override { return kind_; }

  absl::StatusOr<std::vector<int64_t>> PoisonLabels(absl::Span<const int64_t> labels) override {
    if (kind_ == AttackKind::kLabelFlip) return FlipLabels(labels, options_.num_classes);
    return Attack::PoisonLabels(labels);
  }

  absl::StatusOr<Eigen::MatrixXf> Forge(const GradientMatrix& own,
                                        const GradientMatrix& honest) override {
    const absl::string_view name = AttackName(kind_);
    if (own.rows() == 0 || own.cols() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": `own` is ", own.rows(), " x ", own.cols(),
          "; pass the Byzantine workers' gradients as a d x f matrix, d >= 1 and f >= 1 (it "
          "gives the dimension and the number of forged gradients)"));
    }
    const int f = static_cast<int>(own.cols());
    if (IsOmniscient(kind_) && honest.size() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": `honest` is empty, but ", name,
                       " is omniscient; pass the honest workers' gradients of the round (d x h)"));
    }
    if (IsOmniscient(kind_) && honest.rows() != own.rows()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": `honest` has d = ", honest.rows(),
                                                     " coordinates but `own` has d = ", own.rows(),
                                                     "; pass both for the same model"));
    }
    switch (kind_) {
      case AttackKind::kSignFlip:
        return SignFlip(own, options_.sign_flip_scale);
      case AttackKind::kGaussian:
        return GaussianNoise(own.rows(), f, options_.gaussian_sigma, rng_);
      case AttackKind::kAlie: {
        double z = 0;
        if (options_.alie_z.has_value()) {
          z = *options_.alie_z;
        } else {
          absl::StatusOr<double> paper_z = AlieZ(static_cast<int>(honest.cols()) + f, f);
          if (!paper_z.ok()) return paper_z.status();
          z = *paper_z;
        }
        return Alie(honest, f, z);
      }
      case AttackKind::kIpm:
        return Ipm(honest, f, options_.ipm_epsilon);
      case AttackKind::kDrop:
        return DropCoordinates(own, options_.drop_fraction, rng_);
      case AttackKind::kLabelFlip:
        break;
    }
    // label_flip poisoned the labels; the gradient computed on them goes out unchanged.
    return Eigen::MatrixXf(own);
  }

 private:
  AttackKind kind_;
  AttackOptions options_;
  std::mt19937_64 rng_;
};

}  // namespace

absl::string_view AttackName(AttackKind kind) {
  for (const auto& [k, name] : kNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

absl::StatusOr<AttackKind> ParseAttackName(absl::string_view name) {
  for (const auto& [kind, known] : kNames) {
    if (known == name) return kind;
  }
  std::vector<absl::string_view> names;
  for (const auto& entry : kNames) names.push_back(entry.second);
  absl::string_view hint;
  for (const auto& [reference, ours] : kReferenceNames) {
    if (reference == name) hint = ours;
  }
  return absl::InvalidArgumentError(absl::StrCat("attack: unknown name \"", name, "\"; use one of ",
                                                 absl::StrJoin(names, ", "), hint));
}

bool IsOmniscient(AttackKind kind) { return kind == AttackKind::kAlie || kind == AttackKind::kIpm; }

absl::StatusOr<std::vector<int64_t>> Attack::PoisonLabels(absl::Span<const int64_t> labels) {
  return std::vector<int64_t>(labels.begin(), labels.end());
}

absl::StatusOr<std::unique_ptr<Attack>> MakeAttack(absl::string_view name,
                                                   const AttackOptions& options) {
  absl::StatusOr<AttackKind> kind = ParseAttackName(name);
  if (!kind.ok()) return kind.status();
  if (absl::Status status = CheckOptions(*kind, options); !status.ok()) return status;
  return std::make_unique<WorkerAttack>(*kind, options);
}

}  // namespace troupe::federation::attacks
