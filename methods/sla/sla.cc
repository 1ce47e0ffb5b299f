// The only translation unit of methods/sla/ that includes LibTorch (its headers compile slowly):
// sla.h's math and sla_recipe.h's arms.
#include "methods/sla/sla.h"

#include <torch/torch.h>

#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "methods/internal/torch_guard.h"
#include "methods/sla/sla_recipe.h"

namespace troupe::methods::sla {
namespace {

using torch::indexing::None;
using torch::indexing::Slice;

std::string Shape(const at::Tensor& tensor) {
  std::string text = "[";
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    absl::StrAppend(&text, d == 0 ? "" : ", ", tensor.size(d));
  }
  return text + "]";
}

absl::Status CheckTransforms(const char* function, int64_t num_transforms) {
  if (num_transforms < 1) {
    return absl::InvalidArgumentError(absl::StrCat(function, ": num_transforms is ", num_transforms,
                                                   "; it must be >= 1 (M = 4 "
                                                   "for SLA's rotations)"));
  }
  return absl::OkStatus();
}

// CheckLogits: a defined, floating-point [rows, cols] tensor.
absl::Status CheckLogits(const char* function, const char* name, const at::Tensor& logits) {
  if (!logits.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(function, ": ", name, " is undefined"));
  }
  if (logits.dim() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(function, ": ", name, " has shape ",
                                                   Shape(logits), "; it must be [rows, classes]"));
  }
  if (!logits.is_floating_point()) {
    return absl::InvalidArgumentError(
        absl::StrCat(function, ": ", name, " must be floating point (float or double)"));
  }
  return absl::OkStatus();
}

// CheckLabels: a defined int64 [B] tensor with every value in [0, num_classes).
absl::Status CheckLabels(const char* function, const char* name, const at::Tensor& labels,
                         int64_t num_classes) {
  if (!labels.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(function, ": ", name, " is undefined"));
  }
  if (labels.dim() != 1 || labels.scalar_type() != at::kLong) {
    return absl::InvalidArgumentError(absl::StrCat(
        function, ": ", name, " has shape ", Shape(labels), " and dtype ",
        std::string(c10::toString(labels.scalar_type())), "; it must be an int64 [batch] tensor"));
  }
  if (labels.numel() > 0) {
    const int64_t low = labels.min().item<int64_t>();
    const int64_t high = labels.max().item<int64_t>();
    if (low < 0 || high >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat(function, ": ", name, " holds ", low < 0 ? low : high, ", outside [0, ",
                       num_classes, ") (the classes the logits have)"));
    }
  }
  return absl::OkStatus();
}

// CheckRows: logits have exactly batch * M rows (RotateBatch's layout).
absl::Status CheckRows(const char* function, const char* name, const at::Tensor& logits,
                       int64_t batch, int64_t num_transforms) {
  if (logits.size(0) != batch * num_transforms) {
    return absl::InvalidArgumentError(
        absl::StrCat(function, ": ", name, " has ", logits.size(0), " rows, but labels (", batch,
                     ") x num_transforms (", num_transforms, ") = ", batch * num_transforms,
                     "; pass the logits of RotateBatch(images, ", num_transforms, ")"));
  }
  return absl::OkStatus();
}

// CheckJoint: joint logits [B * M, N * M] with M dividing both.
absl::Status CheckJoint(const char* function, const at::Tensor& joint_logits,
                        int64_t num_transforms) {
  if (absl::Status status = CheckTransforms(function, num_transforms); !status.ok()) return status;
  if (absl::Status status = CheckLogits(function, "joint_logits", joint_logits); !status.ok()) {
    return status;
  }
  if (joint_logits.size(0) % num_transforms != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        function, ": joint_logits has ", joint_logits.size(0), " rows, not a multiple of ",
        "num_transforms (", num_transforms, "); every image needs all its M views in the batch"));
  }
  if (joint_logits.size(1) % num_transforms != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        function, ": joint_logits has ", joint_logits.size(1), " columns, not a multiple of ",
        "num_transforms (", num_transforms, "); the joint head has classes x M outputs"));
  }
  return absl::OkStatus();
}

using internal::TorchGuarded;

at::Tensor CrossEntropy(const at::Tensor& logits, const at::Tensor& labels) {
  return torch::nll_loss(torch::log_softmax(logits, 1), labels);
}

at::Tensor Aggregate(const at::Tensor& joint_logits, int64_t num_transforms) {
  at::Tensor sum;
  for (int64_t j = 0; j < num_transforms; ++j) {
    at::Tensor view =
        joint_logits.index({Slice(j, None, num_transforms), Slice(j, None, num_transforms)});
    sum = j == 0 ? view : sum + view;
  }
  return sum / static_cast<double>(num_transforms);
}

}  // namespace

int64_t JointLabel(int64_t label, int64_t transform, int64_t num_transforms) {
  return label * num_transforms + transform;
}

absl::StatusOr<at::Tensor> RotateBatch(const at::Tensor& images, int64_t num_transforms) {
  constexpr const char* kFunction = "RotateBatch";
  if (num_transforms != 1 && num_transforms != 2 && num_transforms != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFunction, ": num_transforms is ", num_transforms,
                     "; rotations give 1, 2 (0 and 180 degrees) or 4 (quarter turns)"));
  }
  if (!images.defined() || images.dim() != 4 || images.size(2) != images.size(3)) {
    return absl::InvalidArgumentError(absl::StrCat(kFunction, ": images has shape ",
                                                   images.defined() ? Shape(images) : "none",
                                                   "; it must be [batch, channels, side, side]"));
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    std::vector<at::Tensor> views;
    for (int64_t j = 0; j < num_transforms; ++j) {
      views.push_back(torch::rot90(images, j * 4 / num_transforms, {2, 3}));
    }
    // stack on dim 1 then flatten: row b * M + j is view j of image b.
    at::Tensor stacked = torch::stack(views, 1);
    return stacked.reshape(
        {images.size(0) * num_transforms, images.size(1), images.size(2), images.size(3)});
  });
}

absl::StatusOr<at::Tensor> JointLabels(const at::Tensor& labels, int64_t num_transforms) {
  constexpr const char* kFunction = "JointLabels";
  if (absl::Status status = CheckTransforms(kFunction, num_transforms); !status.ok()) {
    return status;
  }
  if (absl::Status status =
          CheckLabels(kFunction, "labels", labels, std::numeric_limits<int64_t>::max());
      !status.ok()) {
    return status;
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    const at::Tensor transforms = torch::arange(num_transforms, labels.options());
    return (labels.unsqueeze(1) * num_transforms + transforms.unsqueeze(0)).reshape({-1});
  });
}

absl::StatusOr<at::Tensor> RepeatLabels(const at::Tensor& labels, int64_t num_transforms) {
  constexpr const char* kFunction = "RepeatLabels";
  if (absl::Status status = CheckTransforms(kFunction, num_transforms); !status.ok()) {
    return status;
  }
  if (absl::Status status =
          CheckLabels(kFunction, "labels", labels, std::numeric_limits<int64_t>::max());
      !status.ok()) {
    return status;
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    return labels.repeat_interleave(num_transforms);
  });
}

absl::StatusOr<at::Tensor> TransformLabels(int64_t batch_size, int64_t num_transforms) {
  constexpr const char* kFunction = "TransformLabels";
  if (absl::Status status = CheckTransforms(kFunction, num_transforms); !status.ok()) {
    return status;
  }
  if (batch_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFunction, ": batch_size is ", batch_size, "; it must be >= 0"));
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    return torch::arange(num_transforms, torch::kLong).repeat({batch_size});
  });
}

absl::StatusOr<at::Tensor> BaselineLoss(const at::Tensor& logits, const at::Tensor& labels) {
  constexpr const char* kFunction = "BaselineLoss";
  if (absl::Status status = CheckLogits(kFunction, "logits", logits); !status.ok()) return status;
  if (absl::Status status = CheckLabels(kFunction, "labels", labels, logits.size(1));
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckRows(kFunction, "logits", logits, labels.size(0), 1);
      !status.ok()) {
    return status;
  }
  return TorchGuarded(kFunction,
                      [&]() -> absl::StatusOr<at::Tensor> { return CrossEntropy(logits, labels); });
}

absl::StatusOr<at::Tensor> DaLoss(const at::Tensor& logits, const at::Tensor& labels,
                                  int64_t num_transforms) {
  constexpr const char* kFunction = "DaLoss";
  if (absl::Status status = CheckTransforms(kFunction, num_transforms); !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckLogits(kFunction, "logits", logits); !status.ok()) return status;
  if (absl::Status status = CheckLabels(kFunction, "labels", labels, logits.size(1));
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckRows(kFunction, "logits", logits, labels.size(0), num_transforms);
      !status.ok()) {
    return status;
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    return CrossEntropy(logits, labels.repeat_interleave(num_transforms));
  });
}

absl::StatusOr<at::Tensor> MtLoss(const at::Tensor& class_logits,
                                  const at::Tensor& transform_logits, const at::Tensor& labels,
                                  int64_t num_transforms) {
  constexpr const char* kFunction = "MtLoss";
  if (absl::Status status = CheckTransforms(kFunction, num_transforms); !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckLogits(kFunction, "class_logits", class_logits); !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckLogits(kFunction, "transform_logits", transform_logits);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckLabels(kFunction, "labels", labels, class_logits.size(1));
      !status.ok()) {
    return status;
  }
  const int64_t batch = labels.size(0);
  if (absl::Status status =
          CheckRows(kFunction, "class_logits", class_logits, batch, num_transforms);
      !status.ok()) {
    return status;
  }
  if (absl::Status status =
          CheckRows(kFunction, "transform_logits", transform_logits, batch, num_transforms);
      !status.ok()) {
    return status;
  }
  if (transform_logits.size(1) != num_transforms) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": transform_logits has ", transform_logits.size(1),
        " columns; the transformation head has num_transforms (", num_transforms, ") outputs"));
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    const at::Tensor transforms = torch::arange(num_transforms, torch::kLong).repeat({batch});
    return CrossEntropy(class_logits, labels.repeat_interleave(num_transforms)) +
           CrossEntropy(transform_logits, transforms);
  });
}

absl::StatusOr<at::Tensor> SlaLoss(const at::Tensor& joint_logits, const at::Tensor& labels,
                                   int64_t num_transforms) {
  constexpr const char* kFunction = "SlaLoss";
  if (absl::Status status = CheckJoint(kFunction, joint_logits, num_transforms); !status.ok()) {
    return status;
  }
  if (absl::Status status =
          CheckLabels(kFunction, "labels", labels, joint_logits.size(1) / num_transforms);
      !status.ok()) {
    return status;
  }
  if (absl::Status status =
          CheckRows(kFunction, "joint_logits", joint_logits, labels.size(0), num_transforms);
      !status.ok()) {
    return status;
  }
  absl::StatusOr<at::Tensor> joint_labels = JointLabels(labels, num_transforms);
  if (!joint_labels.ok()) return joint_labels.status();
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    return CrossEntropy(joint_logits, *joint_labels);
  });
}

absl::StatusOr<at::Tensor> SingleInferenceLogits(const at::Tensor& joint_logits,
                                                 int64_t num_transforms) {
  constexpr const char* kFunction = "SingleInferenceLogits";
  if (absl::Status status = CheckJoint(kFunction, joint_logits, num_transforms); !status.ok()) {
    return status;
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    return joint_logits.index(
        {Slice(None, None, num_transforms), Slice(None, None, num_transforms)});
  });
}

absl::StatusOr<at::Tensor> IdentityColumnLogits(const at::Tensor& joint_logits,
                                                int64_t num_transforms) {
  constexpr const char* kFunction = "IdentityColumnLogits";
  if (absl::Status status = CheckTransforms(kFunction, num_transforms); !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckLogits(kFunction, "joint_logits", joint_logits); !status.ok()) {
    return status;
  }
  if (joint_logits.size(1) % num_transforms != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": joint_logits has ", joint_logits.size(1), " columns, not a multiple of ",
        "num_transforms (", num_transforms, "); the joint head has classes x M outputs"));
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    return joint_logits.index({Slice(), Slice(None, None, num_transforms)});
  });
}

absl::StatusOr<at::Tensor> AggregatedLogits(const at::Tensor& joint_logits,
                                            int64_t num_transforms) {
  constexpr const char* kFunction = "AggregatedLogits";
  if (absl::Status status = CheckJoint(kFunction, joint_logits, num_transforms); !status.ok()) {
    return status;
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    return Aggregate(joint_logits, num_transforms);
  });
}

absl::StatusOr<SelfDistillationLoss> SelfDistillation(const at::Tensor& joint_logits,
                                                      const at::Tensor& head_logits,
                                                      const at::Tensor& labels,
                                                      const SlaOptions& options) {
  constexpr const char* kFunction = "SelfDistillation";
  const int64_t m = options.num_transforms;
  if (!(options.distill_temperature > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(kFunction, ": options.distill_temperature is ",
                                                   options.distill_temperature,
                                                   "; it must be > 0 (the code's default is 1)"));
  }
  if (!(options.distill_ce_weight >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(kFunction, ": options.distill_ce_weight is ",
                                                   options.distill_ce_weight,
                                                   "; it must be >= 0 (the code's default is 1)"));
  }
  absl::StatusOr<at::Tensor> sla = SlaLoss(joint_logits, labels, m);
  if (!sla.ok()) return sla.status();
  if (absl::Status status = CheckLogits(kFunction, "head_logits", head_logits); !status.ok()) {
    return status;
  }
  const int64_t batch = labels.size(0);
  const int64_t classes = joint_logits.size(1) / m;
  if ((head_logits.size(0) != batch && head_logits.size(0) != batch * m) ||
      head_logits.size(1) != classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": head_logits has shape ", Shape(head_logits), "; the extra head needs [",
        batch * m, ", ", classes, "] (the rotated batch) or [", batch, ", ", classes,
        "] (untransformed images), from labels (", batch, ") and joint_logits' ", classes,
        " classes"));
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<SelfDistillationLoss> {
    const double t = options.distill_temperature;
    const at::Tensor student = head_logits.size(0) == batch && m > 1
                                   ? head_logits
                                   : head_logits.index({Slice(None, None, m)});
    const at::Tensor teacher_log_p = torch::log_softmax(Aggregate(joint_logits, m).detach() / t, 1);
    const at::Tensor student_log_q = torch::log_softmax(student / t, 1);
    // KL(p || q) = sum p (log p - log q), averaged over the batch ("batchmean").
    const at::Tensor kl =
        (teacher_log_p.exp() * (teacher_log_p - student_log_q)).sum() / static_cast<double>(batch);
    SelfDistillationLoss loss;
    loss.sla = *sla;
    loss.distill = kl * (t * t);
    loss.ce = CrossEntropy(student, labels);
    loss.total = loss.sla + loss.distill + options.distill_ce_weight * loss.ce;
    return loss;
  });
}

}  // namespace troupe::methods::sla

// ---- The experiment's arms as trainer recipes (sla_recipe.h), in this translation unit so
// that methods/sla/ compiles LibTorch's headers once.

namespace troupe::methods::sla {
namespace {

using internal::ValueOrThrow;
using ScoreMap = std::map<std::string, torch::Tensor>;

// RotatedForward runs the model on the M rotations of the batch's images (RotateBatch layout).
train::HeadLogits RotatedForward(train::ClassifierImpl& model, const torch::Tensor& images,
                                 int64_t m) {
  return model.Forward(ValueOrThrow(RotateBatch(images, m)));
}

// JointScores: SI from one pass over the images, AG from a pass over their M rotations.
ScoreMap JointScores(train::ClassifierImpl& model, const torch::Tensor& images, int64_t m) {
  ScoreMap scores;
  scores["si"] = ValueOrThrow(IdentityColumnLogits(model.Forward(images).at("joint"), m));
  scores["ag"] = ValueOrThrow(AggregatedLogits(RotatedForward(model, images, m).at("joint"), m));
  return scores;
}

}  // namespace

absl::StatusOr<Arm> ParseArm(const std::string& name) {
  for (Arm arm : {Arm::kBaseline, Arm::kDa, Arm::kMt, Arm::kSla, Arm::kSlaSd}) {
    if (ArmName(arm) == name) return arm;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("SLA arm '", name, "' is not known; use baseline, da, mt, sla or sla_sd"));
}

std::string ArmName(Arm arm) {
  switch (arm) {
    case Arm::kBaseline:
      return "baseline";
    case Arm::kDa:
      return "da";
    case Arm::kMt:
      return "mt";
    case Arm::kSla:
      return "sla";
    case Arm::kSlaSd:
      return "sla_sd";
  }
  return "unknown";
}

absl::StatusOr<train::Recipe> MakeRecipe(Arm arm, int64_t num_classes, const SlaOptions& options) {
  const int64_t m = options.num_transforms;
  if (m != 2 && m != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SlaOptions.num_transforms is ", m, "; SLA's rotations need 2 (0 and 180 degrees) or 4"));
  }
  if (num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes is ", num_classes, "; a classifier needs >= 2"));
  }
  if (!(options.distill_temperature > 0) || !(options.distill_ce_weight > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SlaOptions.distill_temperature (", options.distill_temperature,
                     ") and distill_ce_weight (", options.distill_ce_weight, ") must be > 0"));
  }
  train::Recipe recipe;
  switch (arm) {
    case Arm::kBaseline:
      recipe.heads = {{"main", num_classes}};
      recipe.loss = [](train::LossInput& in) {
        return ValueOrThrow(
            BaselineLoss(in.model.Forward(in.batch.images).at("main"), in.batch.labels));
      };
      break;
    case Arm::kDa:
      recipe.heads = {{"main", num_classes}};
      recipe.loss = [m](train::LossInput& in) {
        return ValueOrThrow(
            DaLoss(RotatedForward(in.model, in.batch.images, m).at("main"), in.batch.labels, m));
      };
      break;
    case Arm::kMt:
      recipe.heads = {{"main", num_classes}, {"rotation", m}};
      recipe.loss = [m](train::LossInput& in) {
        train::HeadLogits logits = RotatedForward(in.model, in.batch.images, m);
        return ValueOrThrow(MtLoss(logits.at("main"), logits.at("rotation"), in.batch.labels, m));
      };
      recipe.scores = [](train::ClassifierImpl& model, const torch::Tensor& images) {
        return ScoreMap{{"main", model.Forward(images).at("main")}};
      };
      break;
    case Arm::kSla:
      recipe.heads = {{"joint", num_classes * m}};
      recipe.loss = [m](train::LossInput& in) {
        return ValueOrThrow(
            SlaLoss(RotatedForward(in.model, in.batch.images, m).at("joint"), in.batch.labels, m));
      };
      recipe.scores = [m](train::ClassifierImpl& model, const torch::Tensor& images) {
        return JointScores(model, images, m);
      };
      break;
    case Arm::kSlaSd:
      recipe.heads = {{"joint", num_classes * m}, {"sd", num_classes}};
      recipe.loss = [options](train::LossInput& in) {
        train::HeadLogits logits =
            RotatedForward(in.model, in.batch.images, options.num_transforms);
        return ValueOrThrow(
                   SelfDistillation(logits.at("joint"), logits.at("sd"), in.batch.labels, options))
            .total;
      };
      recipe.scores = [m](train::ClassifierImpl& model, const torch::Tensor& images) {
        ScoreMap scores = JointScores(model, images, m);
        scores["sd"] = model.Forward(images).at("sd");
        return scores;
      };
      break;
  }
  return recipe;
}

}  // namespace troupe::methods::sla
