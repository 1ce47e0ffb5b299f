#include "methods/train/models.h"

#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::methods::train {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

ModelOptions Options(Architecture architecture) {
  ModelOptions options;
  options.architecture = architecture;
  options.width = 4;
  options.resnet_blocks_per_stage = 1;
  options.mlp_hidden = {32};
  options.cnn_features = 16;
  return options;
}

TEST(ModelsTest, EveryArchitectureGivesEveryHead) {
  for (Architecture architecture :
       {Architecture::kMlp, Architecture::kSmallCnn, Architecture::kResNet28}) {
    ModelOptions options = Options(architecture);
    options.heads = {{"joint", 40}, {"aux", 10}};
    absl::StatusOr<Classifier> model = MakeClassifier(options);
    ASSERT_TRUE(model.ok()) << model.status();
    HeadLogits logits = (*model)->Forward(torch::rand({3, 1, 28, 28}));
    ASSERT_EQ(logits.size(), 2u) << ArchitectureName(architecture);
    EXPECT_EQ(logits.at("joint").sizes(), (std::vector<int64_t>{3, 40}));
    EXPECT_EQ(logits.at("aux").sizes(), (std::vector<int64_t>{3, 10}));
    // [N, 28, 28] works as well.
    EXPECT_EQ((*model)->Forward(torch::rand({2, 28, 28})).at("aux").size(0), 2);
    EXPECT_EQ((*model)->Features(torch::rand({2, 1, 28, 28})).size(1), (*model)->FeatureSize());
  }
}

TEST(ModelsTest, NonlinearHeadHasItsOwnParameters) {
  ModelOptions options = Options(Architecture::kSmallCnn);
  options.heads = {{"main", 10}, {"aux", 10, 20}};
  EXPECT_THAT(ModelSpec(options), HasSubstr("heads=main:10,aux:10/20"));
  Classifier model = *MakeClassifier(options);
  EXPECT_EQ(model->Forward(torch::rand({3, 1, 28, 28})).at("aux").sizes(),
            (std::vector<int64_t>{3, 10}));
  // main: Linear(16, 10). aux: Linear(16, 20), BatchNorm1d(20), Linear(20, 10).
  EXPECT_EQ(model->HeadParameters("main").size(), 2u);
  EXPECT_EQ(model->HeadParameters("aux").size(), 6u);
  EXPECT_EQ(model->HeadParameters("aux").front().sizes(), (std::vector<int64_t>{20, 16}));
  EXPECT_TRUE(model->HeadParameters("none").empty());
  EXPECT_EQ(model->BackboneParameters().size() + 8, model->parameters().size());

  const std::string path = TempPath("nonlinear_head.pt");
  ASSERT_TRUE(SaveModel(*model, path).ok());
  ModelOptions linear = options;
  linear.heads = {{"main", 10}, {"aux", 10}};
  Classifier other = *MakeClassifier(linear);
  EXPECT_THAT(LoadModel(*other, path).message(), HasSubstr("aux:10/20"));

  options.heads = {{"aux", 10, -1}};
  EXPECT_THAT(MakeClassifier(options).status().message(), HasSubstr("hidden width -1"));
}

TEST(ModelsTest, ParsesArchitectureNames) {
  EXPECT_EQ(*ParseArchitecture("resnet28"), Architecture::kResNet28);
  EXPECT_EQ(*ParseArchitecture("mlp"), Architecture::kMlp);
  absl::StatusOr<Architecture> bad = ParseArchitecture("vgg");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'vgg'"));
}

TEST(ModelsTest, BadHeadsAreErrorsNamingThem) {
  ModelOptions options;
  options.heads = {};
  EXPECT_THAT(MakeClassifier(options).status().message(), HasSubstr("heads is empty"));
  options.heads = {{"main", 10}, {"main", 4}};
  EXPECT_THAT(MakeClassifier(options).status().message(), HasSubstr("'main' is given twice"));
  options.heads = {{"Main Head", 10}};
  EXPECT_THAT(MakeClassifier(options).status().message(), HasSubstr("'Main Head'"));
  options.heads = {{"aux", 0}};
  EXPECT_THAT(MakeClassifier(options).status().message(), HasSubstr("head 'aux' has size 0"));
  options = ModelOptions();
  options.dropout = 1.5;
  EXPECT_THAT(MakeClassifier(options).status().message(), HasSubstr("dropout is 1.5"));
}

TEST(ModelsTest, SaveAndLoadRoundTrip) {
  for (Architecture architecture :
       {Architecture::kMlp, Architecture::kSmallCnn, Architecture::kResNet28}) {
    ModelOptions options = Options(architecture);
    torch::manual_seed(1);
    Classifier saved = *MakeClassifier(options);
    // One training-mode pass moves the batch-norm statistics away from their initial values.
    saved->Forward(torch::rand({4, 1, 28, 28}));
    saved->eval();
    const std::string path = TempPath("model_" + ArchitectureName(architecture) + ".pt");
    ASSERT_TRUE(SaveModel(*saved, path).ok());

    torch::manual_seed(2);
    Classifier loaded = *MakeClassifier(options);
    loaded->eval();
    torch::Tensor images = torch::rand({5, 1, 28, 28});
    EXPECT_FALSE(
        torch::equal(saved->Forward(images).at("main"), loaded->Forward(images).at("main")));
    absl::Status status = LoadModel(*loaded, path);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_TRUE(torch::equal(saved->Forward(images).at("main"), loaded->Forward(images).at("main")))
        << ArchitectureName(architecture);
  }
}

TEST(ModelsTest, LoadErrorsNameTheFile) {
  ModelOptions options = Options(Architecture::kSmallCnn);
  Classifier model = *MakeClassifier(options);
  const std::string missing = TempPath("no_such_model.pt");
  absl::Status status = LoadModel(*model, missing);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr(missing));

  const std::string garbage = TempPath("garbage.pt");
  std::ofstream(garbage) << "not a model";
  status = LoadModel(*model, garbage);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr(garbage));

  const std::string path = TempPath("small_cnn.pt");
  ASSERT_TRUE(SaveModel(*model, path).ok());
  ModelOptions other = options;
  other.heads = {{"main", 10}, {"aux", 4}};
  Classifier different = *MakeClassifier(other);
  status = LoadModel(*different, path);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr(path));
  EXPECT_THAT(status.message(), HasSubstr("heads=main:10,aux:4"));

  EXPECT_THAT(SaveModel(*model, "/no/such/dir/model.pt").message(), HasSubstr("/no/such/dir"));
}

}  // namespace
}  // namespace troupe::methods::train
