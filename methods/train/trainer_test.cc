#include "methods/train/trainer.h"

#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace troupe::methods::train {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

// Learnable images: class c lights up row band c (of ten 2-row bands, rows 4..23) over noise.
data::Dataset BandDataset(int n, uint64_t seed) {
  data::Dataset dataset;
  dataset.rows = dataset.cols = 28;
  dataset.num_classes = 10;
  std::mt19937_64 random(seed);
  for (int i = 0; i < n; ++i) {
    const int label = static_cast<int>(random() % 10);
    for (int r = 0; r < 28; ++r) {
      for (int c = 0; c < 28; ++c) {
        const bool lit = r >= 4 + 2 * label && r < 6 + 2 * label;
        dataset.images.push_back(static_cast<uint8_t>((lit ? 160 : 0) + random() % 64));
      }
    }
    dataset.labels.push_back(static_cast<uint8_t>(label));
  }
  return dataset;
}

ModelOptions SmallModel() {
  ModelOptions options;
  options.architecture = Architecture::kSmallCnn;
  options.width = 4;
  options.cnn_features = 16;
  options.dropout = 0.2;  // draws from LibTorch's generator, which the checkpoint must restore
  return options;
}

TrainerOptions ResumeOptions(OptimizerKind optimizer, ScheduleKind schedule) {
  TrainerOptions options;
  options.epochs = 3;
  options.batches.batch_size = 16;
  options.batches.augment = data::AugmentOptions();
  options.optimizer = optimizer;
  options.schedule = schedule;
  options.step_epochs = 1;
  options.step_gamma = 0.5;
  options.learning_rate = optimizer == OptimizerKind::kSgd ? 0.05 : 0.003;
  options.weight_decay = optimizer == OptimizerKind::kSgd ? 5e-4 : 0.01;
  options.seed = 11;
  options.progress_every_steps = 0;
  return options;
}

// NoisyLoss uses the trainer's std generator too, so that resuming must restore it.
torch::Tensor NoisyLoss(LossInput& input) {
  HeadLogits logits = input.model.Forward(input.batch.images);
  const double scale = 1.0 + std::uniform_real_distribution<double>(0, 0.5)(input.random);
  return scale * torch::nn::functional::cross_entropy(logits.at("main"), input.batch.labels);
}

std::vector<torch::Tensor> State(ClassifierImpl& model) {
  std::vector<torch::Tensor> state;
  for (const torch::Tensor& p : model.parameters()) state.push_back(p.detach().clone());
  for (const torch::Tensor& b : model.buffers()) state.push_back(b.clone());
  return state;
}

class ResumeTest : public ::testing::TestWithParam<std::pair<OptimizerKind, ScheduleKind>> {};

TEST_P(ResumeTest, ResumedTrainingEqualsUninterruptedBitForBit) {
  torch::set_num_threads(1);
  const data::Dataset train = BandDataset(60, 1);  // 4 batches an epoch, the last of 12
  const data::Dataset test = BandDataset(20, 2);
  const TrainerOptions options = ResumeOptions(GetParam().first, GetParam().second);

  torch::manual_seed(5);
  std::unique_ptr<Trainer> straight =
      *Trainer::Create(*MakeClassifier(SmallModel()), train, &test, options, NoisyLoss);
  const std::vector<torch::Tensor> initial = State(*straight->model());
  ASSERT_TRUE(straight->Train().ok());
  ASSERT_EQ(straight->step(), 12);

  const std::string checkpoint = TempDir() + "/resume_" + OptimizerName(options.optimizer) + "_" +
                                 ScheduleName(options.schedule) + ".pt";
  {
    torch::manual_seed(5);
    std::unique_ptr<Trainer> first =
        *Trainer::Create(*MakeClassifier(SmallModel()), train, &test, options, NoisyLoss);
    ASSERT_TRUE(first->Train(/*max_steps=*/6).ok());  // stops in the middle of epoch 2
    ASSERT_EQ(first->step(), 6);
    ASSERT_TRUE(first->SaveCheckpoint(checkpoint).ok());
  }
  // Fresh objects, a different initialization and a disturbed LibTorch generator: only the
  // checkpoint can make the rest of the run match.
  torch::manual_seed(99);
  std::unique_ptr<Trainer> resumed =
      *Trainer::Create(*MakeClassifier(SmallModel()), train, &test, options, NoisyLoss);
  torch::rand({100});
  absl::Status loaded = resumed->LoadCheckpoint(checkpoint);
  ASSERT_TRUE(loaded.ok()) << loaded;
  EXPECT_EQ(resumed->step(), 6);
  ASSERT_TRUE(resumed->Train().ok());

  const std::vector<torch::Tensor> want = State(*straight->model());
  const std::vector<torch::Tensor> got = State(*resumed->model());
  ASSERT_EQ(want.size(), got.size());
  bool moved = false;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(torch::equal(want[i], got[i])) << "tensor " << i;
    moved = moved || !torch::equal(want[i], initial[i]);
  }
  EXPECT_TRUE(moved);
  ASSERT_EQ(resumed->history().size(), 3u);
  for (size_t e = 0; e < 3; ++e) {
    EXPECT_EQ(resumed->history()[e].train_loss, straight->history()[e].train_loss);
    EXPECT_EQ(resumed->history()[e].accuracy, straight->history()[e].accuracy);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Optimizers, ResumeTest,
    ::testing::Values(std::make_pair(OptimizerKind::kSgd, ScheduleKind::kCosine),
                      std::make_pair(OptimizerKind::kAdamW, ScheduleKind::kStep)),
    [](const ::testing::TestParamInfo<std::pair<OptimizerKind, ScheduleKind>>& info) {
      return OptimizerName(info.param.first) + "_" + ScheduleName(info.param.second);
    });

TEST(TrainerTest, LearnsAndWritesLogs) {
  const data::Dataset train = BandDataset(400, 3);
  const data::Dataset test = BandDataset(100, 4);
  ModelOptions model_options;
  model_options.architecture = Architecture::kMlp;
  model_options.mlp_hidden = {32};
  model_options.heads = {{"main", 10}, {"rotation", 4}};
  TrainerOptions options;
  options.epochs = 4;
  options.batches.batch_size = 32;
  options.log_dir = TempDir() + "/learns";
  options.progress_every_steps = 5;
  int reports = 0;
  torch::manual_seed(1);
  std::unique_ptr<Trainer> trainer =
      *Trainer::Create(*MakeClassifier(model_options), train, &test, options);
  trainer->on_progress = [&](const Progress& progress) {
    ++reports;
    EXPECT_GT(progress.images_per_second, 0);
    EXPECT_EQ(progress.total_steps, 4 * 13);
  };
  absl::Status status = trainer->Train();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(reports, 4 * 13);
  ASSERT_EQ(trainer->history().size(), 4u);
  // Only the 10-way head is scored against the labels.
  ASSERT_EQ(trainer->history().back().accuracy.size(), 1u);
  EXPECT_GT(trainer->history().back().accuracy.at("main"), 0.9);
  EXPECT_LT(trainer->history().back().train_loss, trainer->history().front().train_loss);

  std::ifstream csv(options.log_dir + "/train_log.csv");
  std::string header, line;
  std::getline(csv, header);
  EXPECT_EQ(header, "epoch,step,learning_rate,train_loss,seconds,images_per_second,accuracy_main");
  int lines = 0;
  while (std::getline(csv, line)) ++lines;
  EXPECT_EQ(lines, 4);
  std::ifstream json_file(options.log_dir + "/train_log.json");
  nlohmann::json json = nlohmann::json::parse(json_file);
  EXPECT_EQ(json["epochs"].size(), 4u);
  EXPECT_EQ(json["model"], ModelSpec(model_options));
}

TEST(TrainerTest, Schedules) {
  const data::Dataset train = BandDataset(40, 5);  // 4 batches of 10 an epoch
  TrainerOptions options;
  options.epochs = 4;
  options.batches.batch_size = 10;
  options.learning_rate = 0.1;
  options.schedule = ScheduleKind::kCosine;
  options.min_learning_rate = 0.01;
  std::unique_ptr<Trainer> cosine =
      *Trainer::Create(*MakeClassifier(ModelOptions()), train, nullptr, options);
  EXPECT_DOUBLE_EQ(cosine->LearningRate(0), 0.1);
  EXPECT_NEAR(cosine->LearningRate(8), 0.055, 1e-12);  // half way
  EXPECT_NEAR(cosine->LearningRate(16), 0.01, 1e-12);

  options.schedule = ScheduleKind::kStep;
  options.step_epochs = 2;
  options.step_gamma = 0.1;
  std::unique_ptr<Trainer> step =
      *Trainer::Create(*MakeClassifier(ModelOptions()), train, nullptr, options);
  EXPECT_DOUBLE_EQ(step->LearningRate(7), 0.1);
  EXPECT_NEAR(step->LearningRate(8), 0.01, 1e-12);
  EXPECT_NEAR(step->LearningRate(15), 0.01, 1e-12);

  options.step_milestones = {1, 3};  // x0.1 from epoch 1, x0.01 from epoch 3
  std::unique_ptr<Trainer> milestones =
      *Trainer::Create(*MakeClassifier(ModelOptions()), train, nullptr, options);
  EXPECT_DOUBLE_EQ(milestones->LearningRate(3), 0.1);
  EXPECT_NEAR(milestones->LearningRate(4), 0.01, 1e-12);
  EXPECT_NEAR(milestones->LearningRate(11), 0.01, 1e-12);
  EXPECT_NEAR(milestones->LearningRate(12), 0.001, 1e-12);
}

TEST(TrainerTest, EvaluatesEveryNEpochsAndAfterTheLast) {
  const data::Dataset train = BandDataset(40, 5);
  TrainerOptions options;
  options.epochs = 3;
  options.batches.batch_size = 20;
  options.progress_every_steps = 0;
  options.evaluate_every_epochs = 2;
  options.log_dir = TempDir() + "/evaluate_every";
  std::unique_ptr<Trainer> trainer =
      *Trainer::Create(*MakeClassifier(ModelOptions()), train, &train, options);
  ASSERT_TRUE(trainer->Train().ok());
  ASSERT_EQ(trainer->history().size(), 3u);
  EXPECT_TRUE(trainer->history()[0].accuracy.empty());
  EXPECT_EQ(trainer->history()[1].accuracy.count("main"), 1u);
  EXPECT_EQ(trainer->history()[2].accuracy.count("main"), 1u);  // the last epoch
  std::ifstream csv(options.log_dir + "/train_log.csv");
  std::string header, first;
  std::getline(csv, header);
  std::getline(csv, first);
  EXPECT_THAT(header, HasSubstr(",accuracy_main"));
  EXPECT_EQ(first.back(), ',');  // no accuracy after epoch 1

  options.evaluate_every_epochs = 0;
  EXPECT_THAT(
      Trainer::Create(*MakeClassifier(ModelOptions()), train, &train, options).status().message(),
      HasSubstr("evaluate_every_epochs is 0"));
}

TEST(TrainerTest, ScoreFnNamesTheAccuracies) {
  const data::Dataset train = BandDataset(40, 5);
  TrainerOptions options;
  options.epochs = 1;
  options.batches.batch_size = 10;
  options.progress_every_steps = 0;
  ModelOptions model_options;
  model_options.heads = {{"main", 10}, {"other", 10}};
  // "main" as scored, and "flipped": the opposite of main's scores, so never the same argmax.
  ScoreFn scores = [](ClassifierImpl& model, const torch::Tensor& images) {
    torch::Tensor main = model.Forward(images).at("main");
    return std::map<std::string, torch::Tensor>{{"main", main}, {"flipped", -main}};
  };
  std::unique_ptr<Trainer> trainer =
      *Trainer::Create(*MakeClassifier(model_options), train, nullptr, options, nullptr, scores);
  ASSERT_TRUE(trainer->Train().ok());
  absl::StatusOr<std::map<std::string, double>> accuracy = trainer->Evaluate(train);
  ASSERT_TRUE(accuracy.ok()) << accuracy.status();
  ASSERT_EQ(accuracy->size(), 2u);  // "other" is not scored
  EXPECT_GT(accuracy->at("main"), 0.0);
  EXPECT_LT(accuracy->at("main") + accuracy->at("flipped"), 1.0 + 1e-9);

  ScoreFn wrong = [](ClassifierImpl& model, const torch::Tensor& images) {
    return std::map<std::string, torch::Tensor>{{"joint", torch::zeros({images.size(0), 40})}};
  };
  std::unique_ptr<Trainer> bad =
      *Trainer::Create(*MakeClassifier(model_options), train, nullptr, options, nullptr, wrong);
  absl::Status status = bad->Evaluate(train).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("score 'joint' has shape [40, 40]"));
}

TEST(TrainerTest, BadInputsAreErrorsNamingThem) {
  const data::Dataset train = BandDataset(40, 6);
  TrainerOptions options;
  options.batches.batch_size = 10;
  options.epochs = 1;
  options.progress_every_steps = 0;
  auto create = [&](const TrainerOptions& o, const ModelOptions& m = ModelOptions()) {
    return Trainer::Create(*MakeClassifier(m), train, nullptr, o);
  };
  TrainerOptions bad = options;
  bad.learning_rate = -1;
  EXPECT_THAT(create(bad).status().message(), HasSubstr("learning_rate is -1"));
  bad = options;
  bad.device = "tpu";
  EXPECT_THAT(create(bad).status().message(), HasSubstr("'tpu'"));
  bad = options;
  bad.batches.batch_size = 0;
  EXPECT_THAT(create(bad).status().message(), HasSubstr("batch_size is 0"));
  ModelOptions small_head;
  small_head.heads = {{"rotation", 4}, {"main", 10}};
  EXPECT_THAT(create(options, small_head).status().message(),
              HasSubstr("head 'rotation', which has 4 outputs"));
  ModelOptions big_images;
  big_images.input_side = 32;
  EXPECT_THAT(create(options, big_images).status().message(),
              HasSubstr("takes 32x32 images but the training set's are 28x28"));
  EXPECT_THAT(ParseOptimizer("adam").status().message(), HasSubstr("'adam'"));
  EXPECT_THAT(ParseSchedule("linear").status().message(), HasSubstr("'linear'"));
  bad = options;
  bad.step_milestones = {3, 2};
  EXPECT_THAT(create(bad).status().message(), HasSubstr("step_milestones is [3, 2]"));

  std::unique_ptr<Trainer> trainer = *create(options);
  const std::string missing = TempDir() + "/no_such_checkpoint.pt";
  absl::Status status = trainer->LoadCheckpoint(missing);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr(missing));

  const std::string garbage = TempDir() + "/garbage_checkpoint.pt";
  std::ofstream(garbage) << "not a checkpoint";
  EXPECT_THAT(trainer->LoadCheckpoint(garbage).message(), HasSubstr(garbage));

  const std::string checkpoint = TempDir() + "/checkpoint.pt";
  ASSERT_TRUE(trainer->Train(2).ok());
  ASSERT_TRUE(trainer->SaveCheckpoint(checkpoint).ok());

  EXPECT_THAT(trainer->SaveCheckpoint("/no/such/dir/checkpoint.pt").message(),
              HasSubstr("/no/such/dir/checkpoint.pt"));

  TrainerOptions other_seed = options;
  other_seed.seed = 7;
  status = (*create(other_seed))->LoadCheckpoint(checkpoint);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr(checkpoint));
  EXPECT_THAT(status.message(), HasSubstr("seed=7"));

  ModelOptions other_model;
  other_model.heads = {{"main", 10}, {"aux", 10}};
  status = (*create(options, other_model))->LoadCheckpoint(checkpoint);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr(checkpoint));
  EXPECT_THAT(status.message(), HasSubstr("heads=main:10,aux:10"));

  // A model file is not a checkpoint.
  const std::string model_file = TempDir() + "/model_only.pt";
  ASSERT_TRUE(SaveModel(*trainer->model(), model_file).ok());
  EXPECT_THAT(trainer->LoadCheckpoint(model_file).message(), HasSubstr("LoadModel"));

  // A loss that is not a scalar.
  std::unique_ptr<Trainer> vector_loss = *Trainer::Create(
      *MakeClassifier(ModelOptions()), train, nullptr, options,
      [](LossInput& input) { return input.model.Forward(input.batch.images).at("main"); });
  EXPECT_THAT(vector_loss->Train().message(), HasSubstr("one scalar"));
}

}  // namespace
}  // namespace troupe::methods::train
