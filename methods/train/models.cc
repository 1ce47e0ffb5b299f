#include "methods/train/models.h"

#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace troupe::methods::train {
namespace {

namespace nn = torch::nn;

// BasicBlock is He et al. 2016's two 3x3 convolutions with batch norm and an identity (or 1x1
// projection, when the shape changes) shortcut.
class BasicBlockImpl : public nn::Module {
 public:
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride)
      : conv1_(register_module(
            "conv1",
            nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)))),
        bn1_(register_module("bn1", nn::BatchNorm2d(out))),
        conv2_(register_module("conv2",
                               nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)))),
        bn2_(register_module("bn2", nn::BatchNorm2d(out))) {
    if (stride != 1 || in != out) {
      shortcut_ = register_module(
          "shortcut",
          nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)),
                         nn::BatchNorm2d(out)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = torch::relu(bn1_(conv1_(x)));
    y = bn2_(conv2_(y));
    return torch::relu(y + (shortcut_ ? shortcut_->forward(x) : x));
  }

 private:
  nn::Conv2d conv1_;
  nn::BatchNorm2d bn1_;
  nn::Conv2d conv2_;
  nn::BatchNorm2d bn2_;
  nn::Sequential shortcut_{nullptr};
};
TORCH_MODULE(BasicBlock);

nn::Sequential MakeMlp(const ModelOptions& options, int64_t* feature_size) {
  nn::Sequential layers;
  layers->push_back(nn::Flatten());
  int64_t in = options.input_side * options.input_side;
  for (int64_t hidden : options.mlp_hidden) {
    layers->push_back(nn::Linear(in, hidden));
    layers->push_back(nn::ReLU());
    in = hidden;
  }
  *feature_size = in;
  return layers;
}

nn::Sequential MakeSmallCnn(const ModelOptions& options, int64_t* feature_size) {
  const int64_t c1 = options.width, c2 = 2 * options.width;
  const int64_t side = options.input_side / 4;  // two 2x2 max pools
  nn::Sequential layers(nn::Conv2d(nn::Conv2dOptions(1, c1, 3).padding(1).bias(false)),
                        nn::BatchNorm2d(c1), nn::ReLU(), nn::MaxPool2d(2),
                        nn::Conv2d(nn::Conv2dOptions(c1, c2, 3).padding(1).bias(false)),
                        nn::BatchNorm2d(c2), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(),
                        nn::Linear(c2 * side * side, options.cnn_features), nn::ReLU());
  *feature_size = options.cnn_features;
  return layers;
}

nn::Sequential MakeResNet28(const ModelOptions& options, int64_t* feature_size) {
  nn::Sequential layers(nn::Conv2d(nn::Conv2dOptions(1, options.width, 3).padding(1).bias(false)),
                        nn::BatchNorm2d(options.width), nn::ReLU());
  int64_t in = options.width;
  for (int stage = 0; stage < 3; ++stage) {
    const int64_t out = options.width << stage;
    for (int64_t block = 0; block < options.resnet_blocks_per_stage; ++block) {
      layers->push_back(BasicBlock(in, out, stage > 0 && block == 0 ? 2 : 1));
      in = out;
    }
  }
  layers->push_back(nn::AdaptiveAvgPool2d(1));
  layers->push_back(nn::Flatten());
  *feature_size = in;
  return layers;
}

bool IsHeadName(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

absl::Status ReadModule(nn::Module& module, torch::serialize::InputArchive& archive,
                        const std::string& prefix, const std::string& source) {
  auto copy = [&](const std::string& name, torch::Tensor& target, bool is_buffer) {
    torch::Tensor stored;
    if (!archive.try_read(name, stored, is_buffer)) {
      return absl::FailedPreconditionError(
          absl::StrCat(source, ": has no tensor ", prefix, name,
                       "; it was saved from a different model. Load it into the model it was "
                       "saved from, or retrain"));
    }
    if (stored.sizes() != target.sizes()) {
      return absl::FailedPreconditionError(absl::StrCat(
          source, ": tensor ", prefix, name, " has shape [", absl::StrJoin(stored.sizes(), ","),
          "] but the model's is [", absl::StrJoin(target.sizes(), ","),
          "]; it was saved from a different model"));
    }
    torch::NoGradGuard no_grad;
    target.copy_(stored);
    return absl::OkStatus();
  };
  for (auto& item : module.named_parameters(/*recurse=*/false)) {
    if (absl::Status s = copy(item.key(), item.value(), false); !s.ok()) return s;
  }
  for (auto& item : module.named_buffers(/*recurse=*/false)) {
    if (absl::Status s = copy(item.key(), item.value(), true); !s.ok()) return s;
  }
  for (auto& child : module.named_children()) {
    torch::serialize::InputArchive child_archive;
    if (!archive.try_read(child.key(), child_archive)) {
      return absl::FailedPreconditionError(absl::StrCat(source, ": has no module ", prefix,
                                                        child.key(),
                                                        "; it was saved from a different model"));
    }
    absl::Status s =
        ReadModule(*child.value(), child_archive, absl::StrCat(prefix, child.key(), "."), source);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

std::string ArchitectureName(Architecture architecture) {
  switch (architecture) {
    case Architecture::kMlp:
      return "mlp";
    case Architecture::kSmallCnn:
      return "small_cnn";
    case Architecture::kResNet28:
      return "resnet28";
  }
  return "unknown";
}

absl::StatusOr<Architecture> ParseArchitecture(const std::string& name) {
  for (Architecture a : {Architecture::kMlp, Architecture::kSmallCnn, Architecture::kResNet28}) {
    if (ArchitectureName(a) == name) return a;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown architecture '", name, "'; use one of mlp, small_cnn, resnet28"));
}

std::string ModelSpec(const ModelOptions& options) {
  std::string spec = ArchitectureName(options.architecture);
  switch (options.architecture) {
    case Architecture::kMlp:
      absl::StrAppend(&spec, " hidden=", absl::StrJoin(options.mlp_hidden, ","));
      break;
    case Architecture::kSmallCnn:
      absl::StrAppend(&spec, " width=", options.width, " features=", options.cnn_features);
      break;
    case Architecture::kResNet28:
      absl::StrAppend(&spec, " width=", options.width, " blocks=", options.resnet_blocks_per_stage);
      break;
  }
  absl::StrAppend(&spec, " side=", options.input_side, " heads=",
                  absl::StrJoin(options.heads, ",", [](std::string* out, const HeadSpec& head) {
                    absl::StrAppend(out, head.name, ":", head.size);
                    if (head.hidden > 0) absl::StrAppend(out, "/", head.hidden);
                  }));
  return spec;
}

absl::Status ValidateModelOptions(const ModelOptions& options) {
  if (options.heads.empty()) {
    return absl::InvalidArgumentError(
        "ModelOptions.heads is empty; give at least one head, e.g. {\"main\", 10}");
  }
  std::set<std::string> names;
  for (const HeadSpec& head : options.heads) {
    if (!IsHeadName(head.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("head name '", head.name,
                       "' is not valid; use lowercase letters, digits and '_' (e.g. \"main\")"));
    }
    if (!names.insert(head.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("head '", head.name, "' is given twice; head names must be unique"));
    }
    if (head.size < 1) {
      return absl::InvalidArgumentError(absl::StrCat("head '", head.name, "' has size ", head.size,
                                                     "; a head needs >= 1 output"));
    }
    if (head.hidden < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("head '", head.name, "' has hidden width ", head.hidden,
                       "; use 0 for a linear head or > 0 for a nonlinear one"));
    }
  }
  if (options.input_side < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("ModelOptions.input_side is ", options.input_side, "; it must be >= 4"));
  }
  if (options.width < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ModelOptions.width is ", options.width, "; it must be >= 1"));
  }
  if (options.resnet_blocks_per_stage < 1) {
    return absl::InvalidArgumentError(absl::StrCat("ModelOptions.resnet_blocks_per_stage is ",
                                                   options.resnet_blocks_per_stage,
                                                   "; it must be >= 1"));
  }
  if (options.cnn_features < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ModelOptions.cnn_features is ", options.cnn_features, "; it must be >= 1"));
  }
  for (int64_t hidden : options.mlp_hidden) {
    if (hidden < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("ModelOptions.mlp_hidden has ", hidden, "; every layer needs >= 1 unit"));
    }
  }
  if (!(options.dropout >= 0.0 && options.dropout < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ModelOptions.dropout is ", options.dropout, "; it must be in [0, 1)"));
  }
  return absl::OkStatus();
}

ClassifierImpl::ClassifierImpl(const ModelOptions& options) : options_(options) {
  switch (options.architecture) {
    case Architecture::kMlp:
      backbone_ = MakeMlp(options, &feature_size_);
      break;
    case Architecture::kSmallCnn:
      backbone_ = MakeSmallCnn(options, &feature_size_);
      break;
    case Architecture::kResNet28:
      backbone_ = MakeResNet28(options, &feature_size_);
      break;
  }
  register_module("backbone", backbone_);
  dropout_ = register_module("dropout", nn::Dropout(options.dropout));
  for (const HeadSpec& head : options.heads) {
    Head& added = heads_.emplace_back(Head{head.name});
    if (head.hidden == 0) {
      added.linear = register_module("head_" + head.name, nn::Linear(feature_size_, head.size));
    } else {
      added.nonlinear = register_module(
          "head_" + head.name, nn::Sequential(nn::Linear(feature_size_, head.hidden),
                                              nn::Dropout(0.1), nn::BatchNorm1d(head.hidden),
                                              nn::ReLU(), nn::Linear(head.hidden, head.size)));
    }
  }
}

std::vector<torch::Tensor> ClassifierImpl::HeadParameters(const std::string& name) const {
  for (const Head& head : heads_) {
    if (head.name != name) continue;
    return head.linear ? head.linear->parameters() : head.nonlinear->parameters();
  }
  return {};
}

std::vector<torch::Tensor> ClassifierImpl::BackboneParameters() const {
  return backbone_->parameters();
}

torch::Tensor ClassifierImpl::Features(const torch::Tensor& images) {
  torch::Tensor x = images.dim() == 3 ? images.unsqueeze(1) : images;
  return backbone_->forward(x);
}

HeadLogits ClassifierImpl::Heads(const torch::Tensor& features) {
  torch::Tensor x = dropout_(features);
  HeadLogits logits;
  for (Head& head : heads_) {
    logits[head.name] = head.linear ? head.linear(x) : head.nonlinear->forward(x);
  }
  return logits;
}

HeadLogits ClassifierImpl::Forward(const torch::Tensor& images) { return Heads(Features(images)); }

absl::StatusOr<Classifier> MakeClassifier(const ModelOptions& options) {
  if (absl::Status s = ValidateModelOptions(options); !s.ok()) return s;
  return Classifier(options);
}

void WriteModel(ClassifierImpl& model, torch::serialize::OutputArchive& archive) {
  archive.write("spec", c10::IValue(ModelSpec(model.options())));
  torch::serialize::OutputArchive weights;
  model.save(weights);
  archive.write("weights", weights);
}

absl::Status ReadModel(ClassifierImpl& model, torch::serialize::InputArchive& archive,
                       const std::string& source) {
  c10::IValue spec;
  if (!archive.try_read("spec", spec) || !spec.isString()) {
    return absl::FailedPreconditionError(absl::StrCat(
        source, ": has no model spec; it was not written by SaveModel or the trainer"));
  }
  const std::string expected = ModelSpec(model.options());
  if (spec.toStringRef() != expected) {
    return absl::FailedPreconditionError(
        absl::StrCat(source, ": holds model '", spec.toStringRef(), "' but this model is '",
                     expected, "'; build the model with the options it was saved with"));
  }
  torch::serialize::InputArchive weights;
  if (!archive.try_read("weights", weights)) {
    return absl::FailedPreconditionError(absl::StrCat(source, ": has no model weights"));
  }
  return ReadModule(model, weights, "", source);
}

absl::Status SaveModel(ClassifierImpl& model, const std::string& path) {
  try {
    torch::serialize::OutputArchive archive;
    WriteModel(model, archive);
    archive.save_to(path);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot write model file ", path, ": ", e.what(),
                                            "; check that its directory exists and is writable"));
  }
  return absl::OkStatus();
}

absl::Status LoadModel(ClassifierImpl& model, const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    return absl::NotFoundError(absl::StrCat("model file ", path, " does not exist"));
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("cannot read model file ", path,
                                            ": it is not a model saved by SaveModel (",
                                            std::string(e.what()).substr(0, 200), ")"));
  }
  try {
    return ReadModel(model, archive, path);
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat("cannot read model file ", path, ": ", std::string(e.what()).substr(0, 200)));
  }
}

}  // namespace troupe::methods::train
