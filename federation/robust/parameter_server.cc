#include "federation/robust/parameter_server.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"

namespace troupe::federation::robust {
namespace {

std::string WorkerStep(const std::string& worker, int64_t step) {
  return absl::StrCat("worker \"", worker, "\", step ", step, ": ");
}

}  // namespace

absl::string_view RejectionReasonName(RejectionReason reason) {
  switch (reason) {
    case RejectionReason::kUnknownWorker:
      return "unknown_worker";
    case RejectionReason::kStaleStep:
      return "stale_step";
    case RejectionReason::kFutureStep:
      return "future_step";
    case RejectionReason::kDuplicate:
      return "duplicate";
    case RejectionReason::kWrongDimension:
      return "wrong_dimension";
    case RejectionReason::kNonFinite:
      return "non_finite";
  }
  return "unknown";
}

ParameterServerRound::ParameterServerRound(std::vector<std::string> workers, int64_t step,
                                           int64_t dimension)
    : workers_(std::move(workers)),
      known_(workers_.begin(), workers_.end()),
      step_(step),
      dimension_(dimension) {}

std::optional<Rejection> ParameterServerRound::Submit(GradientSubmission submission) {
  const std::string& worker = submission.worker;
  const int64_t step = submission.step;
  auto reject = [&](RejectionReason reason, const std::string& what) {
    return Rejection{
        worker, step, reason,
        absl::StrCat(WorkerStep(worker, step), what, " (", RejectionReasonName(reason), ")")};
  };
  if (known_.count(worker) == 0) {
    return reject(RejectionReason::kUnknownWorker,
                  absl::StrCat("not one of the ", workers_.size(),
                               " configured workers; add it to the server's worker list"));
  }
  if (step < step_) {
    return reject(RejectionReason::kStaleStep,
                  absl::StrCat("stale: the server is at step ", step_,
                               "; fetch the parameters and recompute"));
  }
  if (step > step_) {
    return reject(RejectionReason::kFutureStep,
                  absl::StrCat("from the future: the server is at step ", step_));
  }
  if (valid_.count(worker) > 0 || rejected_.count(worker) > 0) {
    return reject(RejectionReason::kDuplicate,
                  "already submitted for this step; one submission per worker and step");
  }
  const int64_t got = static_cast<int64_t>(submission.gradient.size());
  if (got != dimension_) {
    rejected_.insert(worker);
    return reject(RejectionReason::kWrongDimension,
                  absl::StrCat("the gradient has ", got, " entries, expected ", dimension_,
                               " (the parameter vector's length)"));
  }
  for (int64_t i = 0; i < got; ++i) {
    const float value = submission.gradient[i];
    if (!std::isfinite(value)) {
      rejected_.insert(worker);
      return reject(RejectionReason::kNonFinite,
                    absl::StrCat("gradient coordinate ", i, " is ",
                                 std::isnan(value) ? "NaN" : (value > 0 ? "+Inf" : "-Inf")));
    }
  }
  valid_.emplace(worker, std::move(submission.gradient));
  return std::nullopt;
}

bool ParameterServerRound::Complete() const {
  return NumAnswered() == static_cast<int>(workers_.size());
}

std::vector<std::string> ParameterServerRound::Silent() const {
  std::vector<std::string> out;
  for (const std::string& worker : workers_) {
    if (valid_.count(worker) == 0 && rejected_.count(worker) == 0) out.push_back(worker);
  }
  return out;
}

std::vector<std::string> ParameterServerRound::RejectedWorkers() const {
  std::vector<std::string> out;
  for (const std::string& worker : workers_) {
    if (rejected_.count(worker) > 0) out.push_back(worker);
  }
  return out;
}

std::vector<std::string> ParameterServerRound::AcceptedWorkers() const {
  std::vector<std::string> out;
  for (const std::string& worker : workers_) {
    if (valid_.count(worker) > 0) out.push_back(worker);
  }
  return out;
}

Eigen::MatrixXf ParameterServerRound::Gradients() const {
  std::vector<std::string> accepted = AcceptedWorkers();
  Eigen::MatrixXf out(dimension_, static_cast<Eigen::Index>(accepted.size()));
  for (size_t j = 0; j < accepted.size(); ++j) {
    const std::vector<float>& gradient = valid_.at(accepted[j]);
    out.col(static_cast<Eigen::Index>(j)) =
        Eigen::Map<const Eigen::VectorXf>(gradient.data(), dimension_);
  }
  return out;
}

absl::StatusOr<ParameterServer> ParameterServer::Create(const ParameterServerOptions& options) {
  const std::string where = "parameter server options: ";
  if (options.workers.empty()) {
    return absl::InvalidArgumentError(where + "no workers; list the worker ids in `workers`");
  }
  std::set<std::string> seen;
  for (const std::string& worker : options.workers) {
    if (worker.empty()) return absl::InvalidArgumentError(where + "a worker id is empty");
    if (!seen.insert(worker).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "worker \"", worker, "\" is listed twice"));
    }
  }
  if (options.initial_parameters.empty()) {
    return absl::InvalidArgumentError(where + "initial_parameters is empty (d must be > 0)");
  }
  for (size_t i = 0; i < options.initial_parameters.size(); ++i) {
    if (!std::isfinite(options.initial_parameters[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "initial_parameters[", i, "] is not finite"));
    }
  }
  const int n = static_cast<int>(options.workers.size());
  if (options.quorum < 0 || options.quorum > n) {
    return absl::InvalidArgumentError(absl::StrCat(where, "quorum is ", options.quorum,
                                                   "; it must be in [0, n = ", n, "] (0 means n)"));
  }
  const SgdOptions& sgd = options.sgd;
  if (!(sgd.learning_rate > 0) || !std::isfinite(sgd.learning_rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "learning_rate is ", sgd.learning_rate, "; it must be > 0"));
  }
  if (!(sgd.momentum >= 0 && sgd.momentum < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "momentum is ", sgd.momentum, "; it must be in [0, 1)"));
  }
  if (!(sgd.weight_decay >= 0) || !std::isfinite(sgd.weight_decay)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "weight_decay is ", sgd.weight_decay, "; it must be >= 0"));
  }
  if (options.round_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(where + "round_timeout must be positive");
  }
  absl::StatusOr<std::unique_ptr<aggregators::Aggregator>> aggregator =
      aggregators::MakeAggregator(options.aggregator, options.aggregator_options);
  if (!aggregator.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "aggregator: ", aggregator.status().message()));
  }
  return ParameterServer(options, *std::move(aggregator));
}

ParameterServer::ParameterServer(ParameterServerOptions options,
                                 std::unique_ptr<aggregators::Aggregator> aggregator)
    : options_(std::move(options)),
      aggregator_(std::move(aggregator)),
      parameters_(options_.initial_parameters),
      velocity_(Eigen::VectorXf::Zero(static_cast<Eigen::Index>(parameters_.size()))),
      round_(options_.workers, 0, static_cast<int64_t>(parameters_.size())) {}

int ParameterServer::quorum() const {
  return options_.quorum == 0 ? static_cast<int>(options_.workers.size()) : options_.quorum;
}

std::optional<Rejection> ParameterServer::Submit(GradientSubmission submission) {
  std::optional<Rejection> rejection = round_.Submit(std::move(submission));
  if (rejection) {
    spdlog::warn("parameter server: rejected {}", rejection->message);
    rejections_.push_back(*rejection);
  }
  return rejection;
}

absl::StatusOr<RoundResult> ParameterServer::Close() {
  const int64_t step = round_.step();
  if (round_.NumValid() == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "step ", step, ": no valid gradient to aggregate (", round_.RejectedWorkers().size(),
        " rejected, ", round_.Silent().size(), " silent)"));
  }
  const Eigen::MatrixXf gradients = round_.Gradients();
  absl::StatusOr<Eigen::VectorXf> aggregate = aggregator_->Aggregate(gradients);
  if (!aggregate.ok()) {
    return absl::Status(
        aggregate.status().code(),
        absl::StrCat("step ", step, ": aggregating ", gradients.cols(), " gradients with \"",
                     options_.aggregator, "\": ", aggregate.status().message()));
  }
  Eigen::Map<Eigen::VectorXf> w(parameters_.data(), static_cast<Eigen::Index>(parameters_.size()));
  const float weight_decay = static_cast<float>(options_.sgd.weight_decay);
  const float momentum = static_cast<float>(options_.sgd.momentum);
  const float learning_rate = static_cast<float>(options_.sgd.learning_rate);
  velocity_ = momentum * velocity_ + (*aggregate + weight_decay * w);
  w -= learning_rate * velocity_;

  RoundResult result;
  result.step = step;
  result.accepted = round_.AcceptedWorkers();
  result.rejected = round_.RejectedWorkers();
  result.silent = round_.Silent();
  result.aggregate = *std::move(aggregate);
  spdlog::debug("parameter server: closed step {} with {} of {} workers ({} rejected, {} silent)",
                step, result.accepted.size(), options_.workers.size(), result.rejected.size(),
                result.silent.size());
  round_ =
      ParameterServerRound(options_.workers, step + 1, static_cast<int64_t>(parameters_.size()));
  return result;
}

void ParameterServer::FailRound() {
  round_ = ParameterServerRound(options_.workers, round_.step(),
                                static_cast<int64_t>(parameters_.size()));
}

}  // namespace troupe::federation::robust
