#include "methods/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace troupe::methods::train {
namespace {

constexpr char kCheckpointFormat[] = "troupe.methods.train.checkpoint.v1";

// glibc's malloc returns a freed block above its mmap threshold (128 KiB at first) to the kernel
// at once, so each training step maps its multi-megabyte activations afresh and faults every
// page back in: with small_cnn that was 60% of a step. glibc raises the threshold itself only
// after freeing a mapped block under 32 MiB, which the Python peer's data loading happens to do
// and the trainer's does not. So the trainer fixes both thresholds, once, for the process:
// activations come from the heap and stay there for the next step.
constexpr int kMallocMmapThreshold = 32 << 20;   // glibc's cap on the threshold
constexpr int kMallocTrimThreshold = 512 << 20;  // freed heap kept before trimming

void KeepStepMemoryInTheHeap() {
#if defined(__GLIBC__)
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, kMallocMmapThreshold);
    mallopt(M_TRIM_THRESHOLD, kMallocTrimThreshold);
    return true;
  }();
  static_cast<void>(done);
#endif
}

absl::Status InvalidOption(const std::string& field, double value, const std::string& rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("TrainerOptions.", field, " is ", value, "; it must be ", rule));
}

absl::Status ValidateOptions(const TrainerOptions& o) {
  if (o.epochs < 1) return InvalidOption("epochs", o.epochs, ">= 1");
  if (o.eval_batch_size < 1) return InvalidOption("eval_batch_size", o.eval_batch_size, ">= 1");
  if (!(o.learning_rate > 0)) return InvalidOption("learning_rate", o.learning_rate, "> 0");
  if (!(o.momentum >= 0 && o.momentum < 1))
    return InvalidOption("momentum", o.momentum, "in [0, 1)");
  if (o.nesterov && o.momentum == 0) {
    return absl::InvalidArgumentError(
        "TrainerOptions.nesterov needs momentum > 0; set momentum (e.g. 0.9) or nesterov=false");
  }
  if (!(o.weight_decay >= 0)) return InvalidOption("weight_decay", o.weight_decay, ">= 0");
  if (!(o.adam_beta1 >= 0 && o.adam_beta1 < 1)) {
    return InvalidOption("adam_beta1", o.adam_beta1, "in [0, 1)");
  }
  if (!(o.adam_beta2 >= 0 && o.adam_beta2 < 1)) {
    return InvalidOption("adam_beta2", o.adam_beta2, "in [0, 1)");
  }
  if (!(o.adam_epsilon > 0)) return InvalidOption("adam_epsilon", o.adam_epsilon, "> 0");
  if (o.step_epochs < 1) return InvalidOption("step_epochs", o.step_epochs, ">= 1");
  if (o.evaluate_every_epochs < 1) {
    return InvalidOption("evaluate_every_epochs", o.evaluate_every_epochs, ">= 1");
  }
  for (size_t i = 0; i < o.step_milestones.size(); ++i) {
    if (o.step_milestones[i] < 1 || (i > 0 && o.step_milestones[i] <= o.step_milestones[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TrainerOptions.step_milestones is [", absl::StrJoin(o.step_milestones, ", "),
          "]; it must be increasing epochs >= 1, e.g. [15, 23]"));
    }
  }
  if (!(o.step_gamma > 0 && o.step_gamma <= 1)) {
    return InvalidOption("step_gamma", o.step_gamma, "in (0, 1]");
  }
  if (!(o.min_learning_rate >= 0 && o.min_learning_rate <= o.learning_rate)) {
    return InvalidOption("min_learning_rate", o.min_learning_rate, "in [0, learning_rate]");
  }
  if (o.checkpoint_every_epochs < 1) {
    return InvalidOption("checkpoint_every_epochs", o.checkpoint_every_epochs, ">= 1");
  }
  if (o.progress_every_steps < 0) {
    return InvalidOption("progress_every_steps", o.progress_every_steps, ">= 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<torch::Device> ParseDevice(const std::string& name) {
  try {
    torch::Device device(name);
    if (device.is_cuda() && !torch::cuda::is_available()) {
      return absl::FailedPreconditionError(
          absl::StrCat("TrainerOptions.device is '", name,
                       "' but this LibTorch has no CUDA (or sees no GPU); use device \"cpu\""));
    }
    if (!device.is_cpu() && !device.is_cuda()) {
      return absl::InvalidArgumentError(
          absl::StrCat("TrainerOptions.device is '", name, "'; use \"cpu\" or \"cuda:N\""));
    }
    return device;
  } catch (const std::exception&) {
    return absl::InvalidArgumentError(
        absl::StrCat("TrainerOptions.device is '", name, "'; use \"cpu\" or \"cuda:N\""));
  }
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  return absl::StrFormat("%dm%02ds", s / 60, s % 60);
}

nlohmann::json EpochJson(const EpochLog& log) {
  return {{"epoch", log.epoch},
          {"step", log.step},
          {"learning_rate", log.learning_rate},
          {"train_loss", log.train_loss},
          {"seconds", log.seconds},
          {"images_per_second", log.images_per_second},
          {"accuracy", log.accuracy}};
}

EpochLog EpochFromJson(const nlohmann::json& j) {
  EpochLog log;
  log.epoch = j.at("epoch").get<int64_t>();
  log.step = j.at("step").get<int64_t>();
  log.learning_rate = j.at("learning_rate").get<double>();
  log.train_loss = j.at("train_loss").get<double>();
  log.seconds = j.at("seconds").get<double>();
  log.images_per_second = j.at("images_per_second").get<double>();
  log.accuracy = j.at("accuracy").get<std::map<std::string, double>>();
  return log;
}

}  // namespace

absl::StatusOr<OptimizerKind> ParseOptimizer(const std::string& name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adamw") return OptimizerKind::kAdamW;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown optimizer '", name, "'; use sgd or adamw"));
}

absl::StatusOr<ScheduleKind> ParseSchedule(const std::string& name) {
  if (name == "constant") return ScheduleKind::kConstant;
  if (name == "step") return ScheduleKind::kStep;
  if (name == "cosine") return ScheduleKind::kCosine;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown schedule '", name, "'; use constant, step or cosine"));
}

std::string OptimizerName(OptimizerKind kind) {
  return kind == OptimizerKind::kSgd ? "sgd" : "adamw";
}

std::string ScheduleName(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kConstant:
      return "constant";
    case ScheduleKind::kStep:
      return "step";
    case ScheduleKind::kCosine:
      return "cosine";
  }
  return "unknown";
}

LossFn CrossEntropyLoss(const std::string& head) {
  return [head](LossInput& input) {
    HeadLogits logits = input.model.Forward(input.batch.images);
    return torch::nn::functional::cross_entropy(logits.at(head), input.batch.labels);
  };
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(Classifier model,
                                                         const data::Dataset& train,
                                                         const data::Dataset* test,
                                                         const TrainerOptions& options, LossFn loss,
                                                         ScoreFn scores) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  absl::StatusOr<torch::Device> device = ParseDevice(options.device);
  if (!device.ok()) return device.status();
  BatchOptions batch_options = options.batches;
  batch_options.seed = options.seed;
  absl::StatusOr<Batcher> batcher = Batcher::Create(train, batch_options);
  if (!batcher.ok()) return batcher.status();
  if (test != nullptr && test->size() == 0) {
    return absl::InvalidArgumentError("the test dataset is empty; pass a null test set instead");
  }
  const ModelOptions& model_options = model->options();
  for (const data::Dataset* dataset : {&train, test}) {
    if (dataset != nullptr &&
        (dataset->rows != model_options.input_side || dataset->cols != model_options.input_side)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the model takes ", model_options.input_side, "x", model_options.input_side,
                       " images but the ", dataset == &train ? "training" : "test", " set's are ",
                       dataset->rows, "x", dataset->cols, "; set ModelOptions.input_side"));
    }
  }
  if (!loss) {
    const HeadSpec& head = model_options.heads.front();
    if (head.size < train.num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("the default loss is cross-entropy on head '", head.name, "', which has ",
                       head.size, " outputs, but the training set has ", train.num_classes,
                       " classes; put a head of that size first, or pass a loss"));
    }
    loss = CrossEntropyLoss(head.name);
  }
  model->to(*device);
  torch::manual_seed(options.seed);
  return std::unique_ptr<Trainer>(new Trainer(std::move(model), *std::move(batcher), test, options,
                                              std::move(loss), std::move(scores)));
}

Trainer::Trainer(Classifier model, Batcher batcher, const data::Dataset* test,
                 const TrainerOptions& options, LossFn loss, ScoreFn scores)
    : model_(std::move(model)),
      batcher_(std::move(batcher)),
      test_(test),
      options_(options),
      loss_(std::move(loss)),
      scores_(std::move(scores)),
      random_(MixSeed(options.seed, 0, 0)) {
  if (options_.optimizer == OptimizerKind::kSgd) {
    optimizer_ = std::make_unique<torch::optim::SGD>(
        model_->parameters(), torch::optim::SGDOptions(options_.learning_rate)
                                  .momentum(options_.momentum)
                                  .nesterov(options_.nesterov)
                                  .weight_decay(options_.weight_decay));
  } else {
    optimizer_ = std::make_unique<torch::optim::AdamW>(
        model_->parameters(), torch::optim::AdamWOptions(options_.learning_rate)
                                  .betas(std::make_tuple(options_.adam_beta1, options_.adam_beta2))
                                  .eps(options_.adam_epsilon)
                                  .weight_decay(options_.weight_decay));
  }
}

Trainer::~Trainer() = default;

double Trainer::LearningRate(int64_t step) const {
  switch (options_.schedule) {
    case ScheduleKind::kConstant:
      return options_.learning_rate;
    case ScheduleKind::kStep: {
      const int64_t epoch = step / batcher_.BatchesPerEpoch();
      int64_t decays = epoch / options_.step_epochs;
      if (!options_.step_milestones.empty()) {
        decays = std::upper_bound(options_.step_milestones.begin(), options_.step_milestones.end(),
                                  epoch) -
                 options_.step_milestones.begin();
      }
      return options_.learning_rate * std::pow(options_.step_gamma, static_cast<double>(decays));
    }
    case ScheduleKind::kCosine: {
      const double progress = static_cast<double>(step) / static_cast<double>(TotalSteps());
      return options_.min_learning_rate +
             0.5 * (options_.learning_rate - options_.min_learning_rate) *
                 (1 + std::cos(M_PI * progress));
    }
  }
  return options_.learning_rate;
}

absl::Status Trainer::Train(int64_t max_steps) {
  const int64_t per_epoch = batcher_.BatchesPerEpoch();
  const torch::Device device = model_->parameters().front().device();
  KeepStepMemoryInTheHeap();
  const absl::Time start = absl::Now();
  absl::Time last = start;
  int64_t steps = 0, images = 0;
  model_->train();
  while (!Done() && (max_steps < 0 || steps < max_steps)) {
    const int64_t epoch = step_ / per_epoch;
    Batch batch = batcher_.Get(epoch, step_ % per_epoch);
    batch.images = batch.images.to(device);
    batch.labels = batch.labels.to(device);
    const int64_t n = batch.images.size(0);
    double loss_value = 0;
    try {
      for (torch::optim::OptimizerParamGroup& group : optimizer_->param_groups()) {
        group.options().set_lr(LearningRate(step_));
      }
      optimizer_->zero_grad();
      LossInput input{*model_, batch, random_, epoch, step_};
      torch::Tensor loss = loss_(input);
      if (!loss.defined() || loss.numel() != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the loss callback returned ", loss.defined() ? loss.numel() : 0, " values at step ",
            step_, "; it must return one scalar (e.g. a mean over the batch)"));
      }
      loss.backward();
      optimizer_->step();
      loss_value = loss.item<double>();
    } catch (const std::exception& e) {
      return absl::InternalError(
          absl::StrCat("training step ", step_, " failed: ", std::string(e.what()).substr(0, 500)));
    }
    if (!std::isfinite(loss_value)) {
      return absl::FailedPreconditionError(
          absl::StrCat("the loss is ", loss_value, " at step ", step_,
                       "; lower TrainerOptions.learning_rate (now ", options_.learning_rate, ")"));
    }
    ++step_;
    ++steps;
    images += n;
    epoch_loss_sum_ += loss_value * n;
    epoch_images_ += n;
    const absl::Time now = absl::Now();
    epoch_seconds_ += absl::ToDoubleSeconds(now - last);
    last = now;

    const bool epoch_end = step_ % per_epoch == 0;
    if ((options_.progress_every_steps > 0 && step_ % options_.progress_every_steps == 0) ||
        epoch_end || on_progress) {
      Progress progress;
      progress.epoch = epoch;
      progress.epochs = options_.epochs;
      progress.step = step_;
      progress.total_steps = TotalSteps();
      progress.loss = epoch_loss_sum_ / epoch_images_;
      progress.learning_rate = LearningRate(step_ - 1);
      progress.images_per_second = images / std::max(1e-9, absl::ToDoubleSeconds(now - start));
      progress.eta_seconds = (TotalSteps() - step_) * static_cast<double>(n) /
                             std::max(1e-9, progress.images_per_second);
      if (on_progress) on_progress(progress);
      if (options_.progress_every_steps > 0 &&
          (step_ % options_.progress_every_steps == 0 || epoch_end)) {
        std::fprintf(stderr, "epoch %lld/%lld step %lld/%lld loss %.4f lr %.5g %.0f img/s ETA %s\n",
                     static_cast<long long>(epoch + 1), static_cast<long long>(options_.epochs),
                     static_cast<long long>(step_), static_cast<long long>(TotalSteps()),
                     progress.loss, progress.learning_rate, progress.images_per_second,
                     FormatDuration(progress.eta_seconds).c_str());
      }
    }
    if (epoch_end) {
      if (absl::Status s = FinishEpoch(); !s.ok()) return s;
      model_->train();
      last = absl::Now();
    }
  }
  return absl::OkStatus();
}

absl::Status Trainer::FinishEpoch() {
  EpochLog log;
  log.step = step_;
  log.epoch = step_ / batcher_.BatchesPerEpoch();
  log.learning_rate = LearningRate(step_ - 1);
  log.train_loss = epoch_loss_sum_ / std::max<int64_t>(1, epoch_images_);
  log.seconds = epoch_seconds_;
  log.images_per_second = epoch_images_ / std::max(1e-9, epoch_seconds_);
  if (test_ != nullptr && (log.epoch % options_.evaluate_every_epochs == 0 || Done())) {
    absl::StatusOr<std::map<std::string, double>> accuracy = Evaluate(*test_);
    if (!accuracy.ok()) return accuracy.status();
    log.accuracy = *std::move(accuracy);
  }
  history_.push_back(log);
  epoch_loss_sum_ = 0;
  epoch_images_ = 0;
  epoch_seconds_ = 0;
  if (options_.progress_every_steps > 0 && !log.accuracy.empty()) {
    std::fprintf(stderr, "epoch %lld/%lld test accuracy %s\n", static_cast<long long>(log.epoch),
                 static_cast<long long>(options_.epochs),
                 absl::StrJoin(log.accuracy, " ", absl::PairFormatter("=")).c_str());
  }
  if (absl::Status s = WriteLogs(); !s.ok()) return s;
  if (!options_.checkpoint_path.empty() &&
      (log.epoch % options_.checkpoint_every_epochs == 0 || Done())) {
    return SaveCheckpoint(options_.checkpoint_path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, double>> Trainer::Evaluate(const data::Dataset& dataset) {
  BatchOptions options;
  options.batch_size = options_.eval_batch_size;
  options.shuffle = false;
  options.mean = options_.batches.mean;
  options.std = options_.batches.std;
  absl::StatusOr<Batcher> batcher = Batcher::Create(dataset, options);
  if (!batcher.ok()) return batcher.status();
  const torch::Device device = model_->parameters().front().device();
  std::map<std::string, int64_t> correct;
  torch::NoGradGuard no_grad;
  model_->eval();
  for (int64_t i = 0; i < batcher->BatchesPerEpoch(); ++i) {
    Batch batch = batcher->Get(0, i);
    torch::Tensor labels = batch.labels.to(device);
    torch::Tensor images = batch.images.to(device);
    std::map<std::string, torch::Tensor> scores;
    if (scores_) {
      scores = scores_(*model_, images);
    } else {
      HeadLogits logits = model_->Forward(images);
      for (const HeadSpec& head : model_->options().heads) {
        if (head.size == dataset.num_classes) scores[head.name] = logits.at(head.name);
      }
    }
    for (const auto& [name, score] : scores) {
      if (score.dim() != 2 || score.size(0) != labels.size(0) ||
          score.size(1) != dataset.num_classes) {
        model_->train();
        return absl::InvalidArgumentError(
            absl::StrCat("score '", name, "' has shape [", absl::StrJoin(score.sizes(), ", "),
                         "]; a ScoreFn must give [", labels.size(0), ", ", dataset.num_classes,
                         "] (images x classes)"));
      }
      correct[name] += score.argmax(1).eq(labels).sum().item<int64_t>();
    }
  }
  model_->train();
  std::map<std::string, double> accuracy;
  for (const auto& [name, count] : correct) {
    accuracy[name] = static_cast<double>(count) / static_cast<double>(dataset.size());
  }
  return accuracy;
}

absl::Status Trainer::WriteLogs() const {
  if (options_.log_dir.empty()) return absl::OkStatus();
  std::error_code error;
  std::filesystem::create_directories(options_.log_dir, error);
  const std::string csv_path = options_.log_dir + "/train_log.csv";
  const std::string json_path = options_.log_dir + "/train_log.json";
  std::ofstream csv(csv_path);
  csv << "epoch,step,learning_rate,train_loss,seconds,images_per_second";
  std::set<std::string> heads;  // every score tested in any epoch (see evaluate_every_epochs)
  for (const EpochLog& log : history_) {
    for (const auto& [name, unused] : log.accuracy) heads.insert(name);
  }
  for (const std::string& head : heads) csv << ",accuracy_" << head;
  csv << "\n";
  nlohmann::json epochs = nlohmann::json::array();
  for (const EpochLog& log : history_) {
    csv << absl::StrFormat("%d,%d,%.6g,%.6f,%.3f,%.1f", log.epoch, log.step, log.learning_rate,
                           log.train_loss, log.seconds, log.images_per_second);
    for (const std::string& head : heads) {
      auto it = log.accuracy.find(head);
      csv << "," << (it == log.accuracy.end() ? "" : absl::StrFormat("%.4f", it->second));
    }
    csv << "\n";
    epochs.push_back(EpochJson(log));
  }
  nlohmann::json json = {{"model", ModelSpec(model_->options())},
                         {"run", RunFingerprint()},
                         {"device", options_.device},
                         {"epochs", epochs}};
  std::ofstream(json_path) << json.dump(2) << "\n";
  csv.flush();
  if (!csv) {
    return absl::InternalError(
        absl::StrCat("cannot write ", csv_path, "; check that TrainerOptions.log_dir is writable"));
  }
  return absl::OkStatus();
}

std::string Trainer::RunFingerprint() const {
  const TrainerOptions& o = options_;
  return absl::StrCat("seed=", o.seed, " train_images=", batcher_.dataset().size(),
                      " batch_size=", o.batches.batch_size, " drop_last=", o.batches.drop_last,
                      " augment=", o.batches.augment.has_value(), " epochs=", o.epochs,
                      " optimizer=", OptimizerName(o.optimizer), " lr=", o.learning_rate,
                      " schedule=", ScheduleName(o.schedule),
                      " milestones=", absl::StrJoin(o.step_milestones, ","));
}

absl::Status Trainer::SaveCheckpoint(const std::string& path) {
  const std::string temporary = path + ".tmp";
  try {
    torch::serialize::OutputArchive archive;
    archive.write("format", c10::IValue(std::string(kCheckpointFormat)));
    archive.write("run", c10::IValue(RunFingerprint()));
    torch::serialize::OutputArchive model;
    WriteModel(*model_, model);
    archive.write("model", model);
    torch::serialize::OutputArchive optimizer;
    optimizer_->save(optimizer);
    archive.write("optimizer", optimizer);
    archive.write("step", c10::IValue(step_));
    archive.write("epoch_loss_sum", c10::IValue(epoch_loss_sum_));
    archive.write("epoch_images", c10::IValue(epoch_images_));
    archive.write("epoch_seconds", c10::IValue(epoch_seconds_));
    {
      at::Generator generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      archive.write("torch_generator", generator.get_state(), /*is_buffer=*/true);
    }
    std::ostringstream random;
    random << random_;
    archive.write("random", c10::IValue(random.str()));
    nlohmann::json history = nlohmann::json::array();
    for (const EpochLog& log : history_) history.push_back(EpochJson(log));
    archive.write("history", c10::IValue(history.dump()));
    archive.save_to(temporary);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot write checkpoint ", temporary, ": ",
                                            std::string(e.what()).substr(0, 300),
                                            "; check that its directory exists and is writable"));
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot rename ", temporary, " to ", path, ": ", error.message()));
  }
  return absl::OkStatus();
}

absl::Status Trainer::LoadCheckpoint(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", path, " does not exist"));
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("cannot read checkpoint ", path,
                                            ": it is not a trainer checkpoint (",
                                            std::string(e.what()).substr(0, 200), ")"));
  }
  try {
    c10::IValue format, run, step, loss_sum, images, seconds, random, history;
    if (!archive.try_read("format", format) || !format.isString() ||
        format.toStringRef() != kCheckpointFormat) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " is not a trainer checkpoint (format ", kCheckpointFormat,
                       "); a model saved by SaveModel loads with LoadModel"));
    }
    archive.read("run", run);
    if (run.toStringRef() != RunFingerprint()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", path, " is of run '", run.toStringRef(), "' but this trainer's run is '",
          RunFingerprint(), "'; resume with the options it was written with"));
    }
    torch::serialize::InputArchive model;
    archive.read("model", model);
    if (absl::Status s = ReadModel(*model_, model, path); !s.ok()) return s;
    torch::serialize::InputArchive optimizer;
    archive.read("optimizer", optimizer);
    optimizer_->load(optimizer);
    archive.read("step", step);
    archive.read("epoch_loss_sum", loss_sum);
    archive.read("epoch_images", images);
    archive.read("epoch_seconds", seconds);
    archive.read("random", random);
    archive.read("history", history);
    torch::Tensor generator_state;
    archive.read("torch_generator", generator_state, /*is_buffer=*/true);
    std::istringstream random_text(random.toStringRef());
    std::mt19937_64 restored;
    random_text >> restored;
    if (!random_text) {
      return absl::DataLossError(
          absl::StrCat("checkpoint ", path, ": its generator state is corrupt"));
    }
    std::vector<EpochLog> restored_history;
    for (const nlohmann::json& j : nlohmann::json::parse(history.toStringRef())) {
      restored_history.push_back(EpochFromJson(j));
    }
    {
      at::Generator generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(generator_state);
    }
    random_ = restored;
    step_ = step.toInt();
    epoch_loss_sum_ = loss_sum.toDouble();
    epoch_images_ = images.toInt();
    epoch_seconds_ = seconds.toDouble();
    history_ = std::move(restored_history);
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat("cannot read checkpoint ", path, ": ", std::string(e.what()).substr(0, 300)));
  }
  return absl::OkStatus();
}

}  // namespace troupe::methods::train
