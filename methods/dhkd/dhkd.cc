// The only translation unit of methods/dhkd/ that includes LibTorch (its headers compile slowly):
// dhkd.h's losses and dhkd_recipe.h's arms.
#include "methods/dhkd/dhkd.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "methods/dhkd/dhkd_recipe.h"
#include "methods/internal/torch_guard.h"

namespace troupe::methods::dhkd {
namespace {

std::string Shape(const at::Tensor& tensor) {
  if (!tensor.defined()) return "undefined";
  std::string text = "[";
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    absl::StrAppend(&text, d == 0 ? "" : ", ", tensor.size(d));
  }
  return text + "]";
}

// CheckLogits: a defined floating-point [B, C] tensor.
absl::Status CheckLogits(const char* function, const char* name, const at::Tensor& logits) {
  if (!logits.defined() || logits.dim() != 2 || !logits.is_floating_point()) {
    return absl::InvalidArgumentError(
        absl::StrCat(function, ": ", name, " has shape ", Shape(logits),
                     "; it must be a floating-point [batch, classes] tensor"));
  }
  return absl::OkStatus();
}

// CheckPair: student and teacher logits of the same shape, and a temperature > 0.
absl::Status CheckPair(const char* function, const at::Tensor& student, const at::Tensor& teacher,
                       double temperature) {
  if (!(temperature > 0) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(absl::StrCat(function, ": temperature is ", temperature,
                                                   "; it must be finite and > 0 (DHKD uses 2)"));
  }
  if (absl::Status status = CheckLogits(function, "student", student); !status.ok()) return status;
  if (absl::Status status = CheckLogits(function, "teacher", teacher); !status.ok()) return status;
  if (!student.sizes().equals(teacher.sizes())) {
    return absl::InvalidArgumentError(absl::StrCat(function, ": student has shape ", Shape(student),
                                                   " but teacher has shape ", Shape(teacher),
                                                   "; they must match"));
  }
  return absl::OkStatus();
}

absl::Status CheckEpsilon(const char* function, double epsilon) {
  if (!(epsilon >= 0 && epsilon < 0.5)) {
    return absl::InvalidArgumentError(absl::StrCat(
        function, ": epsilon is ", epsilon, "; it must be in [0, 0.5) (the code uses 1e-8)"));
  }
  return absl::OkStatus();
}

using internal::TorchGuarded;

// BernoulliKl is sum KL(Bern(p) || Bern(q)) over all entries, as the code writes it with
// KLDivLoss: p (log p - log q) + (1 - p) (log(1 - p) - log(1 - q)), with 0 log 0 = 0.
at::Tensor BernoulliKl(const at::Tensor& p, const at::Tensor& q) {
  return (torch::xlogy(p, p) - p * torch::log(q) + torch::xlogy(1 - p, 1 - p) -
          (1 - p) * torch::log(1 - q))
      .sum();
}

// Zeros where autograd::grad left a parameter undefined (a loss that does not reach it).
std::vector<at::Tensor> Densify(std::vector<at::Tensor> grads,
                                const std::vector<at::Tensor>& parameters) {
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) grads[i] = torch::zeros_like(parameters[i]);
  }
  return grads;
}

absl::Status CheckParameters(const char* function, const char* name,
                             const std::vector<at::Tensor>& parameters) {
  if (parameters.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(function, ": ", name, " is empty"));
  }
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (!parameters[i].defined() || !parameters[i].requires_grad()) {
      return absl::InvalidArgumentError(
          absl::StrCat(function, ": ", name, "[", i, "] is undefined or does not require grad"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLoss(const char* function, const char* name, const at::Tensor& loss) {
  if (!loss.defined() || loss.numel() != 1 || !loss.requires_grad()) {
    return absl::InvalidArgumentError(absl::StrCat(
        function, ": ", name, " has shape ", Shape(loss),
        "; it must be a scalar that requires grad (a loss computed from the parameters)"));
  }
  return absl::OkStatus();
}

std::vector<at::Tensor> Gradients(const at::Tensor& loss,
                                  const std::vector<at::Tensor>& parameters) {
  return Densify(torch::autograd::grad({loss}, parameters, /*grad_outputs=*/{},
                                       /*retain_graph=*/true, /*create_graph=*/false,
                                       /*allow_unused=*/true),
                 parameters);
}

at::Tensor Flatten(const std::vector<at::Tensor>& grads) {
  std::vector<at::Tensor> flat;
  for (const at::Tensor& grad : grads) flat.push_back(grad.reshape({-1}));
  return torch::cat(flat);
}

double Cosine(const at::Tensor& a, const at::Tensor& b) {
  const double norms = a.norm().item<double>() * b.norm().item<double>();
  if (norms == 0) return 0;
  return torch::dot(a, b).item<double>() / norms;
}

}  // namespace

absl::StatusOr<at::Tensor> CrossEntropy(const at::Tensor& logits, const at::Tensor& labels) {
  constexpr const char* kFunction = "CrossEntropy";
  if (absl::Status status = CheckLogits(kFunction, "logits", logits); !status.ok()) return status;
  if (!labels.defined() || labels.dim() != 1 || labels.scalar_type() != at::kLong ||
      labels.size(0) != logits.size(0)) {
    return absl::InvalidArgumentError(absl::StrCat(kFunction, ": labels has shape ", Shape(labels),
                                                   "; it must be int64 [", logits.size(0),
                                                   "], one label per row of logits"));
  }
  if (labels.numel() > 0) {
    const int64_t low = labels.min().item<int64_t>();
    const int64_t high = labels.max().item<int64_t>();
    if (low < 0 || high >= logits.size(1)) {
      return absl::InvalidArgumentError(absl::StrCat(kFunction, ": labels holds ",
                                                     low < 0 ? low : high, ", outside [0, ",
                                                     logits.size(1), ") (the logits' classes)"));
    }
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    return torch::nll_loss(torch::log_softmax(logits, 1), labels);
  });
}

absl::StatusOr<at::Tensor> SoftmaxKd(const at::Tensor& student, const at::Tensor& teacher,
                                     double temperature) {
  constexpr const char* kFunction = "SoftmaxKd";
  if (absl::Status status = CheckPair(kFunction, student, teacher, temperature); !status.ok()) {
    return status;
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    const at::Tensor log_p = torch::log_softmax(teacher.detach() / temperature, 1);
    const at::Tensor log_q = torch::log_softmax(student / temperature, 1);
    return (log_p.exp() * (log_p - log_q)).sum() * (temperature * temperature) /
           static_cast<double>(student.size(0));
  });
}

absl::StatusOr<at::Tensor> BinaryKl(const at::Tensor& student, const at::Tensor& teacher,
                                    double temperature, double epsilon) {
  constexpr const char* kFunction = "BinaryKl";
  if (absl::Status status = CheckPair(kFunction, student, teacher, temperature); !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckEpsilon(kFunction, epsilon); !status.ok()) return status;
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    const at::Tensor p = torch::sigmoid(teacher.detach() / temperature).clamp(epsilon, 1 - epsilon);
    const at::Tensor q = torch::sigmoid(student / temperature).clamp(epsilon, 1 - epsilon);
    return BernoulliKl(p, q) * (temperature * temperature) / static_cast<double>(student.size(0));
  });
}

absl::StatusOr<at::Tensor> BinaryKlNorm(const at::Tensor& student, const at::Tensor& teacher,
                                        double temperature, double epsilon) {
  constexpr const char* kFunction = "BinaryKlNorm";
  if (absl::Status status = CheckPair(kFunction, student, teacher, temperature); !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckEpsilon(kFunction, epsilon); !status.ok()) return status;
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<at::Tensor> {
    const at::Tensor q =
        torch::sigmoid((student - teacher.detach()) / temperature).clamp(epsilon, 1 - epsilon);
    const at::Tensor half = torch::full_like(q, 0.5);
    return BernoulliKl(half, q) * (temperature * temperature) /
           static_cast<double>(student.size(0));
  });
}

absl::StatusOr<DualHeadLoss> DualHead(const at::Tensor& main_logits, const at::Tensor& aux_logits,
                                      const at::Tensor& teacher_logits, const at::Tensor& labels,
                                      const DhkdOptions& options) {
  constexpr const char* kFunction = "DualHead";
  if (!(options.ce_weight >= 0) || !(options.distill_weight >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": options.ce_weight (", options.ce_weight, ") and options.distill_weight (",
        options.distill_weight, ") must be >= 0 (DHKD uses 1 and 1)"));
  }
  if (absl::Status status = CheckLogits(kFunction, "main_logits", main_logits); !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckLogits(kFunction, "aux_logits", aux_logits); !status.ok()) {
    return status;
  }
  if (!main_logits.sizes().equals(aux_logits.sizes())) {
    return absl::InvalidArgumentError(absl::StrCat(kFunction, ": main_logits has shape ",
                                                   Shape(main_logits), " but aux_logits has shape ",
                                                   Shape(aux_logits), "; they must match"));
  }
  absl::StatusOr<at::Tensor> ce = CrossEntropy(main_logits, labels);
  if (!ce.ok()) return ce.status();
  absl::StatusOr<at::Tensor> distill;
  switch (options.distill) {
    case DistillLoss::kBinaryKlNorm:
      distill = BinaryKlNorm(aux_logits, teacher_logits, options.temperature, options.epsilon);
      break;
    case DistillLoss::kBinaryKl:
      distill = BinaryKl(aux_logits, teacher_logits, options.temperature, options.epsilon);
      break;
    case DistillLoss::kSoftmaxKd:
      distill = SoftmaxKd(aux_logits, teacher_logits, options.temperature);
      break;
  }
  if (!distill.ok()) return distill.status();
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<DualHeadLoss> {
    DualHeadLoss loss;
    loss.ce = *ce;
    loss.distill = *distill;
    loss.ce_weight = options.ce_weight;
    loss.distill_weight = options.distill_weight;
    loss.total = options.ce_weight * loss.ce + options.distill_weight * loss.distill;
    return loss;
  });
}

absl::StatusOr<std::vector<at::Tensor>> AlignGradients(const std::vector<at::Tensor>& ce_grads,
                                                       const std::vector<at::Tensor>& kd_grads) {
  constexpr const char* kFunction = "AlignGradients";
  if (ce_grads.size() != kd_grads.size() || ce_grads.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFunction, ": ce_grads has ", ce_grads.size(), " tensors and kd_grads ",
                     kd_grads.size(), "; they must be one per parameter, at least one"));
  }
  for (size_t i = 0; i < ce_grads.size(); ++i) {
    if (!ce_grads[i].defined() && !kd_grads[i].defined()) {
      return absl::InvalidArgumentError(
          absl::StrCat(kFunction, ": ce_grads[", i, "] and kd_grads[", i, "] are both undefined"));
    }
    if (ce_grads[i].defined() && kd_grads[i].defined() &&
        !ce_grads[i].sizes().equals(kd_grads[i].sizes())) {
      return absl::InvalidArgumentError(absl::StrCat(
          kFunction, ": ce_grads[", i, "] has shape ", Shape(ce_grads[i]), " but kd_grads[", i,
          "] has shape ", Shape(kd_grads[i]), "; they must match"));
    }
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<std::vector<at::Tensor>> {
    std::vector<at::Tensor> ce(ce_grads.size());
    std::vector<at::Tensor> kd(kd_grads.size());
    for (size_t i = 0; i < ce.size(); ++i) {
      ce[i] = ce_grads[i].defined() ? ce_grads[i] : torch::zeros_like(kd_grads[i]);
      kd[i] = kd_grads[i].defined() ? kd_grads[i] : torch::zeros_like(ce_grads[i]);
    }
    const at::Tensor ce_flat = Flatten(ce);
    const at::Tensor kd_flat = Flatten(kd);
    const double dot = torch::dot(kd_flat, ce_flat).item<double>();
    const double ce_norm_squared = torch::dot(ce_flat, ce_flat).item<double>();
    // A negative dot product implies |g_ce| > 0, so the division is safe.
    const double scale = dot < 0 ? dot / ce_norm_squared : 0.0;
    std::vector<at::Tensor> merged;
    for (size_t i = 0; i < ce.size(); ++i) merged.push_back(ce[i] + (kd[i] - scale * ce[i]));
    return merged;
  });
}

absl::StatusOr<std::vector<at::Tensor>> DualHeadGradients(const DualHeadLoss& loss,
                                                          const std::vector<at::Tensor>& parameters,
                                                          bool align) {
  constexpr const char* kFunction = "DualHeadGradients";
  if (absl::Status status = CheckParameters(kFunction, "parameters", parameters); !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckLoss(kFunction, "loss.total", loss.total); !status.ok()) {
    return status;
  }
  if (!align) {
    return TorchGuarded(kFunction, [&]() -> absl::StatusOr<std::vector<at::Tensor>> {
      return Gradients(loss.total, parameters);
    });
  }
  if (absl::Status status = CheckLoss(kFunction, "loss.ce", loss.ce); !status.ok()) return status;
  if (absl::Status status = CheckLoss(kFunction, "loss.distill", loss.distill); !status.ok()) {
    return status;
  }
  absl::StatusOr<std::vector<at::Tensor>> ce =
      TorchGuarded(kFunction, [&]() -> absl::StatusOr<std::vector<at::Tensor>> {
        return Gradients(loss.ce_weight * loss.ce, parameters);
      });
  if (!ce.ok()) return ce.status();
  absl::StatusOr<std::vector<at::Tensor>> kd =
      TorchGuarded(kFunction, [&]() -> absl::StatusOr<std::vector<at::Tensor>> {
        return Gradients(loss.distill_weight * loss.distill, parameters);
      });
  if (!kd.ok()) return kd.status();
  return AlignGradients(*ce, *kd);
}

absl::StatusOr<GradientCosines> GradientCosine(const at::Tensor& loss_a, const at::Tensor& loss_b,
                                               const std::vector<at::Tensor>& head_parameters,
                                               const std::vector<at::Tensor>& backbone_parameters) {
  constexpr const char* kFunction = "GradientCosine";
  if (absl::Status status = CheckLoss(kFunction, "loss_a", loss_a); !status.ok()) return status;
  if (absl::Status status = CheckLoss(kFunction, "loss_b", loss_b); !status.ok()) return status;
  if (absl::Status status = CheckParameters(kFunction, "head_parameters", head_parameters);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckParameters(kFunction, "backbone_parameters", backbone_parameters);
      !status.ok()) {
    return status;
  }
  return TorchGuarded(kFunction, [&]() -> absl::StatusOr<GradientCosines> {
    std::vector<at::Tensor> all = head_parameters;
    all.insert(all.end(), backbone_parameters.begin(), backbone_parameters.end());
    const std::vector<at::Tensor> a = Gradients(loss_a, all);
    const std::vector<at::Tensor> b = Gradients(loss_b, all);
    const auto head_end = a.begin() + static_cast<std::ptrdiff_t>(head_parameters.size());
    const auto b_head_end = b.begin() + static_cast<std::ptrdiff_t>(head_parameters.size());
    GradientCosines cosines;
    cosines.head = Cosine(Flatten({a.begin(), head_end}), Flatten({b.begin(), b_head_end}));
    cosines.backbone = Cosine(Flatten({head_end, a.end()}), Flatten({b_head_end, b.end()}));
    return cosines;
  });
}

}  // namespace troupe::methods::dhkd

// ---- The experiment's arms as trainer recipes (dhkd_recipe.h), in this translation unit so
// that methods/dhkd/ compiles LibTorch's headers once.

namespace troupe::methods::dhkd {
namespace {

using internal::ValueOrThrow;

std::vector<at::Tensor> Concat(std::vector<at::Tensor> a, const std::vector<at::Tensor>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// StepWith returns a scalar whose value is `value` and whose gradient with respect to
// parameters[i] is gradients[i]: the trainer's backward() then leaves exactly those gradients.
at::Tensor StepWith(const at::Tensor& value, const std::vector<at::Tensor>& parameters,
                    const std::vector<at::Tensor>& gradients) {
  at::Tensor dot = torch::zeros({}, value.options());
  for (size_t i = 0; i < parameters.size(); ++i) {
    dot = dot + (parameters[i] * gradients[i].detach()).sum();
  }
  return value.detach() + (dot - dot.detach());
}

// CosineLog appends the mechanism test's rows to a CSV file.
class CosineLog {
 public:
  static absl::StatusOr<std::shared_ptr<CosineLog>> Open(const std::string& path) {
    const bool exists = std::filesystem::exists(path);
    auto log = std::make_shared<CosineLog>();
    log->file_.open(path, std::ios::app);
    if (!log->file_) {
      return absl::InvalidArgumentError(absl::StrCat("cannot open the gradient-cosine log '", path,
                                                     "' for appending; check the directory"));
    }
    if (!exists) log->file_ << "step,epoch,head_cosine,backbone_cosine\n";
    return log;
  }
  void Write(int64_t step, int64_t epoch, const GradientCosines& cosines) {
    file_ << step << "," << epoch << "," << cosines.head << "," << cosines.backbone << "\n";
    file_.flush();
  }

 private:
  std::ofstream file_;
};

}  // namespace

absl::StatusOr<Arm> ParseArm(const std::string& name) {
  for (Arm arm : {Arm::kCe, Arm::kKd, Arm::kBkl, Arm::kCeBkl, Arm::kDhkd}) {
    if (ArmName(arm) == name) return arm;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("DHKD arm '", name, "' is not known; use ce, kd, bkl, ce_bkl or dhkd"));
}

std::string ArmName(Arm arm) {
  switch (arm) {
    case Arm::kCe:
      return "ce";
    case Arm::kKd:
      return "kd";
    case Arm::kBkl:
      return "bkl";
    case Arm::kCeBkl:
      return "ce_bkl";
    case Arm::kDhkd:
      return "dhkd";
  }
  return "unknown";
}

absl::StatusOr<TeacherFn> MakeTeacher(train::Classifier teacher,
                                      const data::Dataset* precompute_over) {
  teacher->eval();
  const std::string head = teacher->options().heads.front().name;
  if (precompute_over == nullptr) {
    return TeacherFn([teacher, head](const train::Batch& batch) mutable {
      torch::NoGradGuard no_grad;
      return teacher->Forward(batch.images).at(head);
    });
  }
  const int64_t n = precompute_over->size();
  std::vector<torch::Tensor> chunks;
  try {
    torch::NoGradGuard no_grad;
    for (int64_t begin = 0; begin < n; begin += 1000) {
      std::vector<int64_t> indices;
      for (int64_t i = begin; i < std::min(n, begin + 1000); ++i) indices.push_back(i);
      chunks.push_back(teacher->Forward(train::ImagesToTensor(*precompute_over, indices)).at(head));
    }
  } catch (const c10::Error& error) {
    return absl::InvalidArgumentError(absl::StrCat("the teacher failed on the training images: ",
                                                   error.what_without_backtrace()));
  }
  torch::Tensor logits = torch::cat(chunks);
  return TeacherFn([logits](const train::Batch& batch) {
    return logits.index_select(0, torch::tensor(batch.indices, torch::kInt64).to(logits.device()));
  });
}

absl::StatusOr<train::Recipe> MakeRecipe(const ArmOptions& options, int64_t num_classes,
                                         TeacherFn teacher) {
  const DhkdOptions& d = options.dhkd;
  if (!(d.ce_weight >= 0) || !(d.distill_weight >= 0) || !(d.temperature > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DHKD weights must be >= 0 and the temperature > 0 (ce_weight ", d.ce_weight,
                     ", distill_weight ", d.distill_weight, ", temperature ", d.temperature, ")"));
  }
  if (options.aux_hidden < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("aux_hidden is ", options.aux_hidden, "; use 0 (linear head) or a width > 0"));
  }
  if (options.cosine_every < 0 || (options.cosine_every > 0 && options.cosine_log.empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cosine_every is ", options.cosine_every,
                     "; it must be >= 0, and > 0 needs cosine_log (a CSV path)"));
  }
  if (!teacher && options.arm != Arm::kCe) {
    return absl::InvalidArgumentError(
        absl::StrCat("DHKD arm '", ArmName(options.arm), "' needs a teacher"));
  }
  const Arm arm = options.arm;
  std::shared_ptr<CosineLog> cosine_log;
  if (options.cosine_every > 0 && arm != Arm::kCe && arm != Arm::kBkl) {
    absl::StatusOr<std::shared_ptr<CosineLog>> opened = CosineLog::Open(options.cosine_log);
    if (!opened.ok()) return opened.status();
    cosine_log = *std::move(opened);
  }
  train::Recipe recipe;
  recipe.heads = {{"main", num_classes}};
  if (arm == Arm::kDhkd) recipe.heads.push_back({"aux", num_classes, options.aux_hidden});
  recipe.scores = [](train::ClassifierImpl& model, const torch::Tensor& images) {
    return std::map<std::string, torch::Tensor>{{"main", model.Forward(images).at("main")}};
  };
  recipe.loss = [options, arm, teacher, cosine_log](train::LossInput& in) -> torch::Tensor {
    const DhkdOptions& d = options.dhkd;
    train::HeadLogits logits = in.model.Forward(in.batch.images);
    const torch::Tensor& main = logits.at("main");
    if (arm == Arm::kCe) {
      return d.ce_weight * ValueOrThrow(CrossEntropy(main, in.batch.labels));
    }
    const torch::Tensor teacher_logits = teacher(in.batch);
    if (arm == Arm::kBkl) {
      return d.distill_weight *
             ValueOrThrow(BinaryKl(main, teacher_logits, d.temperature, d.epsilon));
    }
    // kd, ce_bkl and dhkd: gamma CE(z1) + alpha distill(z_aux), z_aux = z1 except for dhkd.
    DhkdOptions combined = d;
    if (arm == Arm::kKd) combined.distill = DistillLoss::kSoftmaxKd;
    if (arm == Arm::kCeBkl) combined.distill = DistillLoss::kBinaryKl;
    const torch::Tensor& aux = arm == Arm::kDhkd ? logits.at("aux") : main;
    DualHeadLoss loss =
        ValueOrThrow(DualHead(main, aux, teacher_logits, in.batch.labels, combined));
    if (cosine_log && in.step % options.cosine_every == 0) {
      std::vector<at::Tensor> head = in.model.HeadParameters("main");
      if (arm == Arm::kDhkd) head = Concat(head, in.model.HeadParameters("aux"));
      cosine_log->Write(
          in.step, in.epoch,
          ValueOrThrow(GradientCosine(loss.ce, loss.distill, head, in.model.BackboneParameters())));
    }
    if (arm != Arm::kDhkd || !options.align) return loss.total;
    std::vector<at::Tensor> parameters;
    for (const at::Tensor& p : in.model.parameters()) {
      if (p.requires_grad()) parameters.push_back(p);
    }
    return StepWith(loss.total, parameters,
                    ValueOrThrow(DualHeadGradients(loss, parameters, /*align=*/true)));
  };
  return recipe;
}

}  // namespace troupe::methods::dhkd
