// `troupe train METHOD` as a user runs it: a child process on a small Fashion-MNIST-shaped
// directory (IDX files written here), each method's logs and files, `--help` per method, and
// the bad inputs.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "methods/data/idx.h"
#include "methods/data/idx_test_files.h"
#include "nlohmann/json.hpp"
#include "tests/troupe_command.h"

namespace troupe {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunTroupeCommand;
using testing::TestTempPath;

// WriteSplit writes `n` images whose class shows as a bright row band (learnable) with noise.
void WriteSplit(const std::string& dir, const std::string& prefix, int n, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::vector<uint8_t> images, labels;
  for (int i = 0; i < n; ++i) {
    const int label = i % 10;
    labels.push_back(label);
    for (int row = 0; row < 28; ++row) {
      for (int col = 0; col < 28; ++col) {
        const bool band = row >= 2 + 2 * label && row < 4 + 2 * label;
        images.push_back(static_cast<uint8_t>((band ? 200 : 0) + random() % 40));
      }
    }
  }
  using methods::data::Compression;
  using methods::data::IdxBytes;
  using methods::data::WriteIdxFile;
  const uint32_t count = static_cast<uint32_t>(n);
  ASSERT_FALSE(WriteIdxFile(dir + "/" + prefix + "-images-idx3-ubyte.gz",
                            IdxBytes(methods::data::kIdxImagesMagic, {count, 28, 28}, images),
                            Compression::kGzip)
                   .empty());
  ASSERT_FALSE(WriteIdxFile(dir + "/" + prefix + "-labels-idx1-ubyte",
                            IdxBytes(methods::data::kIdxLabelsMagic, {count}, labels),
                            Compression::kPlain)
                   .empty());
}

class TrainCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_dir_ = new std::string(TestTempPath("fashion_mnist_small"));
    std::filesystem::create_directories(*data_dir_);
    WriteSplit(*data_dir_, "train", 120, 1);
    WriteSplit(*data_dir_, "t10k", 40, 2);
  }
  static void TearDownTestSuite() { delete data_dir_; }

  // Train runs `troupe train METHOD` on the small set with small settings and `flags`.
  static testing::CommandOutcome Train(const std::string& method, std::vector<std::string> flags) {
    std::vector<std::string> all = {method,       "--data_dir=" + *data_dir_, "--architecture=mlp",
                                    "--epochs=2", "--batch_size=40",          "--torch_threads=1"};
    all.insert(all.end(), flags.begin(), flags.end());
    return RunTroupeCommand("train", all);
  }

  static nlohmann::json LastEpoch(const std::string& logs) {
    std::ifstream file(logs + "/train_log.json");
    return nlohmann::json::parse(file)["epochs"].back();
  }

  static std::string* data_dir_;
};

std::string* TrainCommandTest::data_dir_ = nullptr;

TEST_F(TrainCommandTest, SupervisedTrainsLogsAndSavesTheModel) {
  const std::string logs = TestTempPath("supervised");
  testing::CommandOutcome run =
      Train("supervised", {"--logs=" + logs, "--save_model=" + logs + "/model.pt"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("120 training and 40 test images"));
  EXPECT_THAT(run.output, HasSubstr("supervised: test accuracy after 2 epochs: main="));
  EXPECT_TRUE(LastEpoch(logs)["accuracy"].contains("main"));
  EXPECT_TRUE(std::filesystem::exists(logs + "/model.pt"));
}

TEST_F(TrainCommandTest, SlaSdIsScoredSiAgAndSd) {
  const std::string logs = TestTempPath("sla_sd");
  testing::CommandOutcome run = Train("sla", {"--arm=sla_sd", "--logs=" + logs});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("heads=joint:40,sd:10"));
  const nlohmann::json accuracy = LastEpoch(logs)["accuracy"];
  EXPECT_TRUE(accuracy.contains("si") && accuracy.contains("ag") && accuracy.contains("sd"))
      << accuracy;
}

TEST_F(TrainCommandTest, ResumesFromTheCheckpoint) {
  const std::string logs = TestTempPath("resume");
  const std::vector<std::string> flags = {"--arm=mt", "--logs=" + logs,
                                          "--checkpoint=" + logs + "/checkpoint.pt"};
  testing::CommandOutcome first = Train("sla", flags);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  std::vector<std::string> resumed = flags;
  resumed.push_back("--resume");
  testing::CommandOutcome second = Train("sla", resumed);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  // Every epoch was already done: the trainer resumes at the last step and trains no more.
  EXPECT_THAT(second.output, Not(HasSubstr("step 1/")));
}

TEST_F(TrainCommandTest, DhkdLearnsFromATeacherAndLogsTheCosines) {
  const std::string teacher = TestTempPath("teacher.pt");
  testing::CommandOutcome made = Train("supervised", {"--save_model=" + teacher});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  for (const std::string arm : {"ce_bkl", "dhkd"}) {
    const std::string logs = TestTempPath("dhkd_" + arm);
    testing::CommandOutcome run =
        Train("dhkd", {"--arm=" + arm, "--teacher=" + teacher, "--teacher_architecture=mlp",
                       "--aux_hidden=8", "--cosine_every=1", "--augment=false", "--logs=" + logs});
    ASSERT_EQ(run.exit_code, 0) << run.output;
    std::ifstream cosines(logs + "/gradient_cosine.csv");
    std::string line;
    int lines = 0;
    while (std::getline(cosines, line)) ++lines;
    EXPECT_EQ(lines, 1 + 6) << arm;  // header, then 3 steps an epoch for 2 epochs
    EXPECT_TRUE(LastEpoch(logs)["accuracy"].contains("main"));
  }
}

TEST_F(TrainCommandTest, HelpListsTheMethodsOwnFlags) {
  testing::CommandOutcome sla = RunTroupeCommand("train", {"sla", "--help"});
  EXPECT_EQ(sla.exit_code, 0);
  EXPECT_THAT(sla.output, HasSubstr("--transforms"));
  EXPECT_THAT(sla.output, HasSubstr("--epochs"));
  EXPECT_THAT(sla.output, Not(HasSubstr("--teacher")));
  testing::CommandOutcome dhkd = RunTroupeCommand("train", {"dhkd", "--help"});
  EXPECT_THAT(dhkd.output, HasSubstr("--teacher"));
  EXPECT_THAT(dhkd.output, Not(HasSubstr("--transforms")));
  testing::CommandOutcome all = RunTroupeCommand("train", {"--help"});
  EXPECT_THAT(all.output, HasSubstr("supervised"));
  EXPECT_THAT(all.output, HasSubstr("dhkd"));
}

TEST_F(TrainCommandTest, BadInputsAreErrorsNamingThem) {
  testing::CommandOutcome run = RunTroupeCommand("train", {"rl"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("unknown method \"rl\""));
  run = RunTroupeCommand("train", {});
  EXPECT_THAT(run.output, HasSubstr("no method given"));
  run = Train("sla", {"--arm=rotnet"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("'rotnet'"));
  run = Train("dhkd", {"--arm=kd"});
  EXPECT_THAT(run.output, HasSubstr("needs --teacher"));
  run = Train("supervised", {"--milestones=5,x"});
  EXPECT_THAT(run.output, HasSubstr("--milestones=5,x"));
  run = Train("supervised", {"--schedule=step", "--milestones=5,3"});
  EXPECT_THAT(run.output, HasSubstr("step_milestones is [5, 3]"));
  run = Train("supervised", {"--architecture=vgg"});
  EXPECT_THAT(run.output, HasSubstr("'vgg'"));
  run = RunTroupeCommand("train", {"supervised", "--data_dir=/no/such/dir"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("/no/such/dir"));
  // A teacher of another shape: the error names the file, both specs and the flags to set.
  const std::string teacher = TestTempPath("mlp_teacher.pt");
  ASSERT_EQ(Train("supervised", {"--save_model=" + teacher}).exit_code, 0);
  run = Train("dhkd", {"--arm=kd", "--teacher=" + teacher});  // the default: small_cnn
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr(teacher));
  EXPECT_THAT(run.output, HasSubstr("--teacher_architecture"));
  run = Train("supervised", {"extra"});
  EXPECT_THAT(run.output, HasSubstr("unexpected argument \"extra\""));
}

}  // namespace
}  // namespace troupe
