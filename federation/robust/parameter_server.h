// The synchronous parameter server's model side, LibTorch-free: one round collects a gradient
// per known worker for the current step, rejects what must not reach the model, aggregates the
// accepted gradients with a robust rule (federation/aggregators) and takes one SGD step on a
// flat parameter vector. The actor around it (parameter_server_actor.h) adds replies and the
// watchdog; this layer has no threads, no clock and no CAF.
//
//   ParameterServerOptions options;
//   options.workers = {"w0", "w1", "w2"};
//   options.initial_parameters = {0.0f, 0.0f};
//   options.aggregator = "median";
//   absl::StatusOr<ParameterServer> server = ParameterServer::Create(options);
//   std::optional<Rejection> rejected = server->Submit({"w0", 0, {0.5f, -1.0f}});
//   ...
//   if (server->round().Complete()) absl::StatusOr<RoundResult> result = server->Close();
//
// The exact update (PyTorch's torch.optim.SGD with dampening 0, no Nesterov), for the
// aggregate a of the accepted gradients g_1..g_k of step t:
//   g = a + weight_decay * w_t
//   v_{t+1} = momentum * v_t + g          (v_0 = 0, so v_1 = g, as PyTorch's first step)
//   w_{t+1} = w_t - learning_rate * v_{t+1}
// The server does not know which workers are Byzantine; robustness comes from the aggregator.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "eigen3/Eigen/Core"
#include "federation/aggregators/aggregator.h"

namespace troupe::federation::robust {

// GradientSubmission is one worker's gradient for one step.
struct GradientSubmission {
  std::string worker;
  int64_t step = 0;
  std::vector<float> gradient;
};

// RejectionReason says why a submission was kept away from the model.
enum class RejectionReason {
  kUnknownWorker,   // the id is not one of the configured workers
  kStaleStep,       // for a step the server has already closed
  kFutureStep,      // for a step the server has not opened
  kDuplicate,       // the worker already submitted (valid or not) for this step
  kWrongDimension,  // the length differs from the parameter vector's
  kNonFinite,       // a NaN or an Inf entry
};

// RejectionReasonName is a short name for logs and tests: "unknown_worker", "stale_step",
// "future_step", "duplicate", "wrong_dimension", "non_finite".
absl::string_view RejectionReasonName(RejectionReason reason);

// Rejection records one rejected submission; `message` names the worker, the step and what was
// wrong (the coordinate of a NaN/Inf, the expected and the received dimension, ...).
struct Rejection {
  std::string worker;
  int64_t step = 0;
  RejectionReason reason = RejectionReason::kUnknownWorker;
  std::string message;
};

// SgdOptions configures the server's optimizer (see the update in the file comment).
struct SgdOptions {
  // 0.1, momentum 0.9 and weight decay 5e-4: the CIFAR-10 ResNet setting of He et al. (2016),
  // the usual starting point of robust-training experiments on CIFAR-10.
  double learning_rate = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
};

// ParameterServerOptions configures a parameter server (and its actor).
struct ParameterServerOptions {
  // The known worker set (its size is n); ids must be distinct and non-empty.
  std::vector<std::string> workers;
  // The flat parameter vector w_0 (its length is d).
  std::vector<float> initial_parameters;
  // An aggregator name MakeAggregator accepts. The coordinate-wise median needs no f and
  // tolerates fewer than half of the accepted gradients being Byzantine.
  std::string aggregator = "median";
  aggregators::AggregatorOptions aggregator_options;
  SgdOptions sgd;
  // Actor only: the watchdog closes a round this long after its first submission...
  absl::Duration round_timeout = absl::Seconds(30);
  // ...with the valid gradients it has if there are at least `quorum` of them, else fails it.
  // 0 means n (every worker).
  int quorum = 0;
};

// ParameterServerRound collects the submissions of one step from the known workers.
class ParameterServerRound {
 public:
  ParameterServerRound(std::vector<std::string> workers, int64_t step, int64_t dimension);

  int64_t step() const { return step_; }

  // Submit accepts a valid submission (nullopt) or returns why not. Checks, in order: unknown
  // worker, stale or future step, duplicate, dimension, NaN/Inf. A worker gets one submission
  // per step: after a rejected one (bad dimension or values), a resubmission is a duplicate.
  // Only the last two reasons count the worker as answered for this round.
  std::optional<Rejection> Submit(GradientSubmission submission);

  // Complete is true when every known worker has a valid or a rejected submission.
  bool Complete() const;
  // NumValid is the number of accepted gradients.
  int NumValid() const { return static_cast<int>(valid_.size()); }
  // NumAnswered is the number of workers with a valid or a rejected submission.
  int NumAnswered() const { return NumValid() + static_cast<int>(rejected_.size()); }
  // Silent lists the known workers with no submission counted for this round, in order.
  std::vector<std::string> Silent() const;
  // RejectedWorkers lists the workers whose submission for this step was rejected.
  std::vector<std::string> RejectedWorkers() const;
  // AcceptedWorkers lists the workers with a valid gradient, in the known workers' order.
  std::vector<std::string> AcceptedWorkers() const;
  // Gradients stacks the valid gradients into d x k, in AcceptedWorkers' order.
  Eigen::MatrixXf Gradients() const;

 private:
  std::vector<std::string> workers_;
  std::set<std::string> known_;
  int64_t step_;
  int64_t dimension_;
  std::map<std::string, std::vector<float>> valid_;
  std::set<std::string> rejected_;
};

// RoundResult reports a closed round.
struct RoundResult {
  int64_t step = 0;  // the step that was closed; the server is now at step + 1
  std::vector<std::string> accepted;
  std::vector<std::string> rejected;
  std::vector<std::string> silent;
  Eigen::VectorXf aggregate;
};

// ParameterServer holds the parameters, the momentum buffer, the aggregator and the open round.
class ParameterServer {
 public:
  // Create checks the options: a non-empty, duplicate-free worker set, d > 0, finite initial
  // parameters, 0 <= quorum <= n, a known aggregator name, learning rate > 0, momentum in
  // [0, 1), weight decay >= 0, a positive round timeout.
  static absl::StatusOr<ParameterServer> Create(const ParameterServerOptions& options);

  int64_t step() const { return round_.step(); }
  const std::vector<float>& parameters() const { return parameters_; }
  const Eigen::VectorXf& momentum_buffer() const { return velocity_; }
  const ParameterServerOptions& options() const { return options_; }
  // quorum is the effective quorum (options' quorum, or n when that is 0).
  int quorum() const;
  const ParameterServerRound& round() const { return round_; }
  // rejections lists every rejection since Create, oldest first.
  const std::vector<Rejection>& rejections() const { return rejections_; }

  // Submit passes the submission to the open round; a rejection is logged (spdlog, warning)
  // and recorded in rejections().
  std::optional<Rejection> Submit(GradientSubmission submission);

  // Close aggregates the round's valid gradients, takes the SGD step and opens the next round.
  // The caller decides when (Complete(), or a forced close). With no valid gradient, or when
  // the aggregator fails (e.g. Krum with too few gradients for its f), it is an error and
  // nothing changes: the caller then calls FailRound.
  absl::StatusOr<RoundResult> Close();

  // FailRound discards the open round's submissions and opens a fresh round for the same step;
  // the parameters stay as they are.
  void FailRound();

 private:
  ParameterServer(ParameterServerOptions options,
                  std::unique_ptr<aggregators::Aggregator> aggregator);

  ParameterServerOptions options_;
  std::unique_ptr<aggregators::Aggregator> aggregator_;
  std::vector<float> parameters_;
  Eigen::VectorXf velocity_;
  ParameterServerRound round_;
  std::vector<Rejection> rejections_;
};

}  // namespace troupe::federation::robust
