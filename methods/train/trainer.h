// Trainer: trains a Classifier on a Dataset with SGD (with momentum) or AdamW under a constant,
// step or cosine learning-rate schedule; evaluates accuracy per head; writes CSV and JSON logs
// and a progress line; and checkpoints so that a resumed run continues exactly where it
// stopped: the model, the optimizer's state, the step, the LibTorch CPU generator and the
// trainer's own std::mt19937_64 are all in the checkpoint, and batches depend only on (seed,
// epoch, index) (see batches.h). On the CPU with one LibTorch thread a resumed run ends with
// the same parameters, bit for bit, as one that never stopped.
//
//   TrainerOptions options;
//   options.epochs = 10;
//   options.log_dir = "/tmp/run1";                  // train_log.csv, train_log.json
//   options.checkpoint_path = "/tmp/run1/ckpt.pt";  // written after every epoch
//   absl::StatusOr<std::unique_ptr<Trainer>> trainer =
//       Trainer::Create(model, train, &test, options);
//   if (resuming) status = (*trainer)->LoadCheckpoint(options.checkpoint_path);
//   status = (*trainer)->Train();
//
// The loss is a callback, so that methods with their own losses (SLA's rotation labels, DHKD's
// distillation) use the same loop; the default is cross-entropy on the first head.
//
// The LibTorch CPU generator is process-wide: two trainers in one process that use it (dropout,
// random losses) interleave its draws. Exact resumption holds for one trainer per process.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "methods/data/dataset.h"
#include "methods/train/batches.h"
#include "methods/train/models.h"
#include "methods/train/progress.h"

namespace torch::optim {
class Optimizer;
}  // namespace torch::optim

namespace troupe::methods::train {

enum class OptimizerKind { kSgd, kAdamW };
enum class ScheduleKind { kConstant, kStep, kCosine };

// ParseOptimizer reads "sgd" or "adamw"; ParseSchedule reads "constant", "step" or "cosine".
absl::StatusOr<OptimizerKind> ParseOptimizer(const std::string& name);
absl::StatusOr<ScheduleKind> ParseSchedule(const std::string& name);
std::string OptimizerName(OptimizerKind kind);
std::string ScheduleName(ScheduleKind kind);

// TrainerOptions holds a training run's settings. The defaults are the common CIFAR/
// Fashion-MNIST recipe: SGD, momentum 0.9, weight decay 5e-4, learning rate 0.05, cosine
// schedule (Loshchilov and Hutter 2017) to zero.
struct TrainerOptions {
  int64_t epochs = 10;
  // Training batches (batch size, augmentation); its seed is replaced by `seed`.
  BatchOptions batches;
  int64_t eval_batch_size = 1000;
  // Test accuracy after every evaluate_every_epochs epochs and after the last (the logs of the
  // other epochs have none).
  int64_t evaluate_every_epochs = 1;

  OptimizerKind optimizer = OptimizerKind::kSgd;
  double learning_rate = 0.05;
  double momentum = 0.9;  // SGD only; 0: plain SGD
  bool nesterov = false;  // SGD only
  // SGD: L2 added to the gradient; AdamW: decoupled decay (0.01 is AdamW's usual value;
  // Loshchilov and Hutter 2019).
  double weight_decay = 5e-4;
  double adam_beta1 = 0.9;    // Kingma and Ba 2015
  double adam_beta2 = 0.999;  // Kingma and Ba 2015
  double adam_epsilon = 1e-8;

  ScheduleKind schedule = ScheduleKind::kCosine;
  // Step schedule: the rate is multiplied by step_gamma every step_epochs epochs or, when
  // step_milestones is set (increasing epochs, e.g. {15, 23} of 30), at each milestone.
  int64_t step_epochs = 30;
  double step_gamma = 0.1;
  std::vector<int64_t> step_milestones;
  // Cosine schedule: the rate falls from learning_rate to min_learning_rate over all steps.
  double min_learning_rate = 0.0;

  // Seeds the batch order, augmentation, the LibTorch generator (at Create) and the trainer's
  // std::mt19937_64.
  uint64_t seed = 0;
  // "cpu", or "cuda" / "cuda:N" where LibTorch was built with CUDA.
  std::string device = "cpu";

  // Directory for train_log.csv and train_log.json (rewritten after every epoch); "" for none.
  std::string log_dir;
  // Written after every checkpoint_every_epochs epochs and at the end; "" for none.
  std::string checkpoint_path;
  int64_t checkpoint_every_epochs = 1;
  // A progress line on stderr every progress_every_steps steps and after each epoch; 0: none.
  int64_t progress_every_steps = 100;
};

// LossInput is what a loss callback sees: the model (in training mode), the batch (on the
// trainer's device), a generator for the method's own randomness (restored on resume), and
// where training is.
struct LossInput {
  ClassifierImpl& model;
  const Batch& batch;
  std::mt19937_64& random;
  int64_t epoch;
  int64_t step;
};

// LossFn returns the batch's scalar loss; the trainer calls backward() on it.
using LossFn = std::function<torch::Tensor(LossInput& input)>;

// CrossEntropyLoss is the mean cross-entropy of head `head`'s logits against the labels.
LossFn CrossEntropyLoss(const std::string& head);

// ScoreFn gives a method's named class scores, each [N, num_classes], for a batch of test
// images [N, 1, side, side] (model in eval mode, no gradient); the trainer reports the accuracy
// of each name. SLA scores one pass (SI) and four rotated passes (AG) of its joint head this
// way. The default is every head whose size is the number of classes.
using ScoreFn = std::function<std::map<std::string, torch::Tensor>(ClassifierImpl& model,
                                                                   const torch::Tensor& images)>;

// Recipe is what a method (SLA's and DHKD's arms) gives the trainer: the heads its model needs,
// its loss and its test scores (null: every head with num_classes outputs).
struct Recipe {
  std::vector<HeadSpec> heads;
  LossFn loss;
  ScoreFn scores;
};

class Trainer {
 public:
  // Create checks the options (errors name the field), moves the model to the device, builds
  // the optimizer and seeds the generators. `train` and `test` (may be null) must outlive the
  // trainer.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      Classifier model, const data::Dataset& train, const data::Dataset* test,
      const TrainerOptions& options, LossFn loss = nullptr, ScoreFn scores = nullptr);
  ~Trainer();

  // Train runs until all epochs are done or `max_steps` more steps (< 0: no limit) have run,
  // evaluating, logging and checkpointing at the end of each epoch.
  absl::Status Train(int64_t max_steps = -1);

  // Evaluate returns the accuracy of each score (ScoreFn; by default each head whose size is
  // dataset.num_classes). A score of another shape is InvalidArgument naming it.
  absl::StatusOr<std::map<std::string, double>> Evaluate(const data::Dataset& dataset);

  // SaveCheckpoint writes everything that resuming needs (see the file comment) to `path`,
  // atomically (a temporary file, then a rename).
  absl::Status SaveCheckpoint(const std::string& path);
  // LoadCheckpoint restores a checkpoint written by a trainer with the same model and the same
  // options that shape the run (seed, batch size, epochs, optimizer, schedule, dataset size);
  // anything else is FailedPrecondition naming the file and the difference.
  absl::Status LoadCheckpoint(const std::string& path);

  // LearningRate is the schedule's rate at global step `step`.
  double LearningRate(int64_t step) const;

  int64_t step() const { return step_; }
  int64_t TotalSteps() const { return options_.epochs * batcher_.BatchesPerEpoch(); }
  bool Done() const { return step_ >= TotalSteps(); }
  const std::vector<EpochLog>& history() const { return history_; }
  Classifier& model() { return model_; }
  std::mt19937_64& random() { return random_; }

  // on_progress, when set, receives every progress report (the trainer actor forwards them).
  std::function<void(const Progress&)> on_progress;

 private:
  Trainer(Classifier model, Batcher batcher, const data::Dataset* test,
          const TrainerOptions& options, LossFn loss, ScoreFn scores);
  absl::Status FinishEpoch();
  absl::Status WriteLogs() const;
  std::string RunFingerprint() const;

  Classifier model_;
  Batcher batcher_;
  const data::Dataset* test_;
  TrainerOptions options_;
  LossFn loss_;
  ScoreFn scores_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::mt19937_64 random_;
  int64_t step_ = 0;
  // The epoch in progress so far (kept in checkpoints so resumed logs match).
  double epoch_loss_sum_ = 0;
  int64_t epoch_images_ = 0;
  double epoch_seconds_ = 0;
  std::vector<EpochLog> history_;
};

}  // namespace troupe::methods::train
