// train: trains a model on Fashion-MNIST with the methods/train trainer, from the command line.
//
//   bazel run -c opt //methods/train:train -- --model=resnet28 --epochs=10
//       --logs=/tmp/run1 --checkpoint=/tmp/run1/checkpoint.pt   (one line)
//   # interrupted? the same command with --resume continues where the checkpoint left off.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "actors/torch_threads.h"
#include "methods/data/fashion_mnist.h"
#include "methods/data/partition.h"
#include "methods/train/models.h"
#include "methods/train/trainer.h"

ABSL_FLAG(std::string, data_dir, "", "Fashion-MNIST directory (empty: DefaultFashionMnistDir()).");
ABSL_FLAG(int64_t, train_images, 0, "Train on a class-balanced subset of this size (0: all).");
ABSL_FLAG(int64_t, test_images, 0, "Evaluate on a class-balanced subset of this size (0: all).");
ABSL_FLAG(std::string, model, "small_cnn", "mlp, small_cnn or resnet28.");
ABSL_FLAG(int64_t, width, 16, "First convolution's channels (small_cnn, resnet28).");
ABSL_FLAG(int64_t, epochs, 10, "Epochs.");
ABSL_FLAG(int64_t, batch_size, 128, "Training batch size.");
ABSL_FLAG(bool, augment, true, "Random pad-crop and flip of training images.");
ABSL_FLAG(std::string, optimizer, "sgd", "sgd or adamw.");
ABSL_FLAG(double, lr, 0.05, "Peak learning rate.");
ABSL_FLAG(double, momentum, 0.9, "SGD momentum.");
ABSL_FLAG(double, weight_decay, 5e-4, "Weight decay (SGD: L2; AdamW: decoupled).");
ABSL_FLAG(std::string, schedule, "cosine", "constant, step or cosine.");
ABSL_FLAG(int64_t, step_epochs, 30, "Step schedule: epochs between decays.");
ABSL_FLAG(double, step_gamma, 0.1, "Step schedule: decay factor.");
ABSL_FLAG(uint64_t, seed, 0, "Seed of everything random.");
ABSL_FLAG(int, threads, 2, "LibTorch intra-op threads.");
ABSL_FLAG(std::string, device, "cpu", "cpu, or cuda:N where LibTorch has CUDA.");
ABSL_FLAG(std::string, logs, "", "Where train_log.csv and train_log.json go (empty: none).");
ABSL_FLAG(std::string, checkpoint, "", "Checkpoint file, written after every epoch.");
ABSL_FLAG(bool, resume, false, "Continue from --checkpoint.");
ABSL_FLAG(std::string, save_model, "", "Write the trained model here (LoadModel reads it).");

namespace troupe::methods::train {
namespace {

absl::StatusOr<data::Dataset> Load(const std::string& dir, data::Split split, int64_t images) {
  absl::StatusOr<data::Dataset> dataset = data::LoadFashionMnist(dir, split);
  if (!dataset.ok() || images <= 0 || images >= dataset->size()) return dataset;
  absl::StatusOr<std::vector<int64_t>> subset = data::ClassBalancedSubset(
      dataset->labels, dataset->num_classes, images, absl::GetFlag(FLAGS_seed));
  if (!subset.ok()) return subset.status();
  return data::Select(*dataset, *subset);
}

absl::Status Run() {
  if (absl::Status s = actors::SetTorchThreads(absl::GetFlag(FLAGS_threads)); !s.ok()) return s;
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (dir.empty()) dir = data::DefaultFashionMnistDir();
  absl::StatusOr<data::Dataset> train =
      Load(dir, data::Split::kTrain, absl::GetFlag(FLAGS_train_images));
  if (!train.ok()) return train.status();
  absl::StatusOr<data::Dataset> test =
      Load(dir, data::Split::kTest, absl::GetFlag(FLAGS_test_images));
  if (!test.ok()) return test.status();

  ModelOptions model_options;
  absl::StatusOr<Architecture> architecture = ParseArchitecture(absl::GetFlag(FLAGS_model));
  if (!architecture.ok()) return architecture.status();
  model_options.architecture = *architecture;
  model_options.width = absl::GetFlag(FLAGS_width);
  TrainerOptions options;
  absl::StatusOr<OptimizerKind> optimizer = ParseOptimizer(absl::GetFlag(FLAGS_optimizer));
  if (!optimizer.ok()) return optimizer.status();
  absl::StatusOr<ScheduleKind> schedule = ParseSchedule(absl::GetFlag(FLAGS_schedule));
  if (!schedule.ok()) return schedule.status();
  options.optimizer = *optimizer;
  options.schedule = *schedule;
  options.epochs = absl::GetFlag(FLAGS_epochs);
  options.batches.batch_size = absl::GetFlag(FLAGS_batch_size);
  if (absl::GetFlag(FLAGS_augment)) options.batches.augment = data::AugmentOptions();
  options.learning_rate = absl::GetFlag(FLAGS_lr);
  options.momentum = absl::GetFlag(FLAGS_momentum);
  options.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  options.step_epochs = absl::GetFlag(FLAGS_step_epochs);
  options.step_gamma = absl::GetFlag(FLAGS_step_gamma);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.device = absl::GetFlag(FLAGS_device);
  options.log_dir = absl::GetFlag(FLAGS_logs);
  options.checkpoint_path = absl::GetFlag(FLAGS_checkpoint);
  options.progress_every_steps = 50;

  torch::manual_seed(options.seed);
  absl::StatusOr<Classifier> model = MakeClassifier(model_options);
  if (!model.ok()) return model.status();
  absl::StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(*model, *train, &*test, options);
  if (!trainer.ok()) return trainer.status();
  if (absl::GetFlag(FLAGS_resume)) {
    if (options.checkpoint_path.empty()) {
      return absl::InvalidArgumentError("--resume needs --checkpoint=<file>");
    }
    if (absl::Status s = (*trainer)->LoadCheckpoint(options.checkpoint_path); !s.ok()) return s;
    std::fprintf(stderr, "resumed from %s at step %lld\n", options.checkpoint_path.c_str(),
                 static_cast<long long>((*trainer)->step()));
  }
  std::fprintf(stderr, "model %s, %lld training and %lld test images\n",
               ModelSpec(model_options).c_str(), static_cast<long long>(train->size()),
               static_cast<long long>(test->size()));
  if (absl::Status s = (*trainer)->Train(); !s.ok()) return s;
  const std::string save_model = absl::GetFlag(FLAGS_save_model);
  if (!save_model.empty()) return SaveModel(*(*trainer)->model(), save_model);
  return absl::OkStatus();
}

}  // namespace
}  // namespace troupe::methods::train

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status status = troupe::methods::train::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "train: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
