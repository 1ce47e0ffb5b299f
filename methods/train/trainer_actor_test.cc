#include "methods/train/trainer_actor.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

#include "actors/errors.h"
#include "actors/gpu_worker.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "methods/train/trainer.h"

namespace troupe::methods::train {
namespace {

using ::testing::HasSubstr;

data::Dataset RandomDataset(int n, uint64_t seed) {
  data::Dataset dataset;
  dataset.rows = dataset.cols = 28;
  dataset.num_classes = 10;
  std::mt19937_64 random(seed);
  for (int i = 0; i < n * 28 * 28; ++i) dataset.images.push_back(random() % 256);
  for (int i = 0; i < n; ++i) dataset.labels.push_back(random() % 10);
  return dataset;
}

class TrainerActorTest : public ::testing::Test {
 protected:
  TrainerActorTest()
      : system_(config_),
        worker_(*actors::SpawnGpuWorker(system_, {"train0", -1, nullptr})),
        trainer_(SpawnTrainerActor(system_, worker_)),
        train_(RandomDataset(48, 1)),
        test_(RandomDataset(10, 2)) {
    options_.epochs = 2;
    options_.batches.batch_size = 16;  // 3 steps an epoch
    options_.progress_every_steps = 0;
    model_options_.architecture = Architecture::kMlp;
    model_options_.mlp_hidden = {16};
  }

  ~TrainerActorTest() override {
    caf::anon_send_exit(trainer_, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(worker_, caf::exit_reason::user_shutdown);
  }

  TrainingJob Job(const std::string& name, TrainerOptions options) {
    TrainingJob job;
    job.name = name;
    job.make = [this, options]() -> absl::StatusOr<std::unique_ptr<Trainer>> {
      absl::StatusOr<Classifier> model = MakeClassifier(model_options_);
      if (!model.ok()) return model.status();
      return Trainer::Create(*model, train_, &test_, options);
    };
    return job;
  }

  // Run sends the job and waits for its reply; progress messages stay in the mailbox.
  absl::StatusOr<TrainingResult> Run(caf::scoped_actor& self, TrainingJob job) {
    absl::StatusOr<TrainingResult> out = absl::InternalError("no reply");
    self->request(trainer_, caf::infinite, std::move(job))
        .receive([&](TrainingResult& result) { out = std::move(result); },
                 [&](caf::error& error) { out = actors::ToStatus(error); });
    return out;
  }

  int CountProgress(caf::scoped_actor& self, const std::string& job) {
    int count = 0;
    for (bool more = true; more;) {
      more = false;
      self->receive(
          [&](const TrainingProgress& progress) {
            EXPECT_EQ(progress.job, job);
            EXPECT_EQ(progress.progress.total_steps, 6);
            ++count;
            more = true;
          },
          caf::after(std::chrono::milliseconds(200)) >> [] {});
    }
    return count;
  }

  caf::actor_system_config config_;
  caf::actor_system system_;
  caf::actor worker_;
  caf::actor trainer_;
  data::Dataset train_, test_;
  TrainerOptions options_;
  ModelOptions model_options_;
};

TEST_F(TrainerActorTest, RunsAJobAndReportsProgress) {
  caf::scoped_actor self{system_};
  absl::StatusOr<TrainingResult> result = Run(self, Job("fmnist", options_));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->job, "fmnist");
  EXPECT_EQ(result->steps, 6);
  EXPECT_TRUE(result->done);
  ASSERT_EQ(result->history.size(), 2u);
  EXPECT_EQ(result->history.back().accuracy.count("main"), 1u);
  EXPECT_EQ(CountProgress(self, "fmnist"), 6);
}

TEST_F(TrainerActorTest, ResumesAJobFromItsCheckpoint) {
  const char* dir = std::getenv("TEST_TMPDIR");
  TrainerOptions options = options_;
  options.checkpoint_path = std::string(dir != nullptr ? dir : "/tmp") + "/actor_job.pt";
  std::remove(options.checkpoint_path.c_str());
  caf::scoped_actor self{system_};
  TrainingJob first = Job("part", options);
  first.max_steps = 4;
  first.resume = true;  // no checkpoint yet: starts from the beginning
  first.checkpoint_path = options.checkpoint_path;
  absl::StatusOr<TrainingResult> result = Run(self, first);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps, 4);
  EXPECT_FALSE(result->done);

  TrainingJob rest = Job("part", options);
  rest.resume = true;
  rest.checkpoint_path = options.checkpoint_path;
  result = Run(self, rest);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps, 6);
  EXPECT_TRUE(result->done);
  EXPECT_EQ(result->history.size(), 2u);
  EXPECT_EQ(CountProgress(self, "part"), 6);
}

TEST_F(TrainerActorTest, AFailedJobIsAnErrorNamingIt) {
  TrainerOptions bad = options_;
  bad.epochs = 0;
  caf::scoped_actor self{system_};
  absl::StatusOr<TrainingResult> result = Run(self, Job("broken", bad));
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("\"broken\""));
  EXPECT_THAT(result.status().message(), HasSubstr("epochs is 0"));
  // The worker survives and runs the next job.
  EXPECT_TRUE(Run(self, Job("next", options_)).ok());
}

}  // namespace
}  // namespace troupe::methods::train
