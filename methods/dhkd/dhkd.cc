// The only translation unit of methods/dhkd/ that includes LibTorch (its headers compile slowly).
#include "methods/dhkd/dhkd.h"

#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
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
