// Models for 28x28 grey images (Fashion-MNIST): a backbone (an MLP, a small CNN or a ResNet for
// 28x28 inputs) and any number of named linear heads on its features, so that methods with
// several outputs (SLA's joint and auxiliary heads, DHKD's two heads) share one model type.
// Models save to and load from files that record the architecture, so a mismatch is an error
// naming both.
//
//   ModelOptions options;
//   options.architecture = Architecture::kResNet28;
//   options.heads = {{"joint", 40}, {"aux", 10}};  // SLA: 10 classes x 4 rotations, and 10
//   absl::StatusOr<Classifier> model = MakeClassifier(options);
//   HeadLogits logits = (*model)->Forward(images);  // images: [N, 1, 28, 28] float
//   torch::Tensor joint = logits.at("joint");       // [N, 40]
//   absl::Status saved = SaveModel(**model, "/tmp/model.pt");
//
// This header includes LibTorch's module headers; include it only where models are used.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/serialize/archive.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace troupe::methods::train {

// Architecture names a backbone.
enum class Architecture {
  kMlp,       // flatten, then fully connected layers with ReLU
  kSmallCnn,  // two conv-BN-ReLU-maxpool stages, then a fully connected layer
  kResNet28,  // a 3x3 stem and three stages of basic residual blocks (28, 14, 7 pixels)
};

// ArchitectureName is "mlp", "small_cnn" or "resnet28".
std::string ArchitectureName(Architecture architecture);

// ParseArchitecture reads an ArchitectureName; anything else is InvalidArgument listing them.
absl::StatusOr<Architecture> ParseArchitecture(const std::string& name);

// HeadSpec is one head: its name (lowercase letters, digits and '_'), its number of outputs
// and, for a nonlinear head, its hidden width: hidden > 0 makes Linear(features, hidden) ->
// Dropout(0.1) -> BatchNorm1d -> ReLU -> Linear(hidden, size), DHKD's CIFAR auxiliary head;
// hidden = 0 (the default) is one Linear.
struct HeadSpec {
  std::string name;
  int64_t size = 0;
  int64_t hidden = 0;
};

// ModelOptions describes a model; the defaults suit Fashion-MNIST on a CPU.
struct ModelOptions {
  Architecture architecture = Architecture::kSmallCnn;
  // The heads, at least one, names unique. Fashion-MNIST has 10 classes.
  std::vector<HeadSpec> heads = {{"main", 10}};
  // Input images are input_side x input_side with one channel.
  int64_t input_side = 28;
  // Channels of the first convolution (small_cnn: 32 then 64; resnet28: 16, 32, 64 as in the
  // CIFAR ResNets of He et al. 2016, Section 4.2).
  int64_t width = 16;
  // Residual blocks per stage of resnet28: 3 is He et al.'s ResNet-20; 2 is cheaper on a CPU.
  int64_t resnet_blocks_per_stage = 2;
  // Hidden layer sizes of the MLP.
  std::vector<int64_t> mlp_hidden = {256, 128};
  // Size of small_cnn's fully connected feature layer.
  int64_t cnn_features = 128;
  // Dropout on the features before the heads (0: none).
  double dropout = 0.0;
};

// ModelSpec is a one-line description of the options that fix the parameters' shapes, stored
// in saved models and compared on load, e.g. "resnet28 width=16 blocks=2 side=28
// heads=joint:40,aux:10" (a nonlinear head reads "aux:10/200").
std::string ModelSpec(const ModelOptions& options);

// ValidateModelOptions checks the options; every error names the bad field and its value.
absl::Status ValidateModelOptions(const ModelOptions& options);

// HeadLogits maps each head's name to its logits, [N, head size].
using HeadLogits = std::map<std::string, torch::Tensor>;

// ClassifierImpl is a backbone with linear heads. Construct it through MakeClassifier, which
// validates the options.
class ClassifierImpl : public torch::nn::Module {
 public:
  explicit ClassifierImpl(const ModelOptions& options);

  // Features runs the backbone: [N, 1, side, side] (or [N, side, side]) -> [N, FeatureSize()].
  torch::Tensor Features(const torch::Tensor& images);
  // Heads applies every head (after dropout) to backbone features.
  HeadLogits Heads(const torch::Tensor& features);
  // Forward is Heads(Features(images)).
  HeadLogits Forward(const torch::Tensor& images);

  // HeadParameters are the parameters of head `name` (empty for an unknown name);
  // BackboneParameters those of the backbone.
  std::vector<torch::Tensor> HeadParameters(const std::string& name) const;
  std::vector<torch::Tensor> BackboneParameters() const;
  int64_t FeatureSize() const { return feature_size_; }
  const ModelOptions& options() const { return options_; }

 private:
  ModelOptions options_;
  int64_t feature_size_ = 0;
  torch::nn::Sequential backbone_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  // Each head is a Linear or, when nonlinear, a Sequential (the other is null).
  struct Head {
    std::string name;
    torch::nn::Linear linear{nullptr};
    torch::nn::Sequential nonlinear{nullptr};
  };
  std::vector<Head> heads_;
};
TORCH_MODULE(Classifier);

// MakeClassifier validates the options and builds the model with LibTorch's default
// initialization (seed it with torch::manual_seed first for a reproducible model).
absl::StatusOr<Classifier> MakeClassifier(const ModelOptions& options);

// SaveModel writes the model's parameters, buffers (batch-norm statistics) and ModelSpec to
// `path`. Errors name the path.
absl::Status SaveModel(ClassifierImpl& model, const std::string& path);

// LoadModel reads a file written by SaveModel into `model`, which must have the same ModelSpec
// (FailedPrecondition naming the file and both specs otherwise). NotFound for a missing file.
absl::Status LoadModel(ClassifierImpl& model, const std::string& path);

// WriteModel and ReadModel are SaveModel and LoadModel into an archive (the trainer puts the
// model into its checkpoints this way); `source` names the file in errors.
void WriteModel(ClassifierImpl& model, torch::serialize::OutputArchive& archive);
absl::Status ReadModel(ClassifierImpl& model, torch::serialize::InputArchive& archive,
                       const std::string& source);

}  // namespace troupe::methods::train
