#include "federation/strategies/model_update.h"

#include <cmath>
#include <cstddef>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace troupe::federation::strategies {
namespace {

std::string ShapeText(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string ClientOwner(const ClientUpdate& update) {
  return absl::StrCat("client '", update.client, "'");
}

}  // namespace

int64_t NumElements(absl::Span<const int64_t> shape) {
  int64_t count = 1;
  for (int64_t size : shape) count *= size;
  return count;
}

absl::Status ValidateModel(const Model& model, absl::string_view owner) {
  std::set<std::string> names;
  for (size_t t = 0; t < model.size(); ++t) {
    const NamedTensor& tensor = model[t];
    if (tensor.name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          owner, ": tensor #", t, " has an empty name; name every tensor as its state_dict key"));
    }
    if (!names.insert(tensor.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(owner, ": tensor '", tensor.name,
                                                     "' appears twice; send each state_dict ",
                                                     "entry once"));
    }
    for (int64_t size : tensor.shape) {
      if (size < 0) {
        return absl::InvalidArgumentError(absl::StrCat(owner, ": tensor '", tensor.name,
                                                       "' has shape ", ShapeText(tensor.shape),
                                                       " with a negative dimension"));
      }
    }
    const int64_t expected = NumElements(tensor.shape);
    if (static_cast<int64_t>(tensor.data.size()) != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat(owner, ": tensor '", tensor.name, "' has shape ", ShapeText(tensor.shape),
                       " (", expected, " values) but holds ", tensor.data.size(),
                       " values; send the tensor's values row-major, all of them"));
    }
    for (size_t i = 0; i < tensor.data.size(); ++i) {
      if (!std::isfinite(tensor.data[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            owner, ": tensor '", tensor.name, "' value ", i, " is ", tensor.data[i],
            " (not finite); the training diverged: drop this model or lower its learning rate"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateUpdates(const Model& global, absl::Span<const ClientUpdate> updates) {
  if (absl::Status status = ValidateModel(global, "global model"); !status.ok()) return status;
  if (updates.empty()) {
    return absl::InvalidArgumentError(
        "updates: no client updates; aggregate only once at least one client has reported");
  }
  std::set<std::string> clients;
  for (const ClientUpdate& update : updates) {
    const std::string owner = ClientOwner(update);
    if (!clients.insert(update.client).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(owner, " sent two updates in one round; pass each client's update once"));
    }
    if (update.num_samples < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(owner, ": num_samples is ", update.num_samples,
                       "; it must be >= 1 (a client that trained on nothing has no update)"));
    }
    if (update.model.size() != global.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(owner, " sent ", update.model.size(), " tensors but the global model has ",
                       global.size(), "; send every state_dict entry of the global model"));
    }
    for (size_t t = 0; t < global.size(); ++t) {
      const NamedTensor& theirs = update.model[t];
      const NamedTensor& ours = global[t];
      if (theirs.name != ours.name) {
        return absl::InvalidArgumentError(absl::StrCat(
            owner, ": tensor #", t, " is '", theirs.name, "' but the global model's is '",
            ours.name, "'; send the tensors in the global model's order"));
      }
      if (theirs.shape != ours.shape) {
        return absl::InvalidArgumentError(absl::StrCat(
            owner, ": tensor '", theirs.name, "' has shape ", ShapeText(theirs.shape),
            " but the global model's has ", ShapeText(ours.shape),
            "; the client trained another architecture: rebuild it from the global model"));
      }
    }
    if (absl::Status status = ValidateModel(update.model, owner); !status.ok()) return status;
  }
  return absl::OkStatus();
}

std::vector<float> FlattenModel(const Model& model) {
  std::vector<float> flat;
  size_t total = 0;
  for (const NamedTensor& tensor : model) total += tensor.data.size();
  flat.reserve(total);
  for (const NamedTensor& tensor : model) {
    flat.insert(flat.end(), tensor.data.begin(), tensor.data.end());
  }
  return flat;
}

absl::StatusOr<Model> UnflattenModel(const Model& layout, absl::Span<const float> flat) {
  int64_t total = 0;
  for (const NamedTensor& tensor : layout) total += NumElements(tensor.shape);
  if (static_cast<int64_t>(flat.size()) != total) {
    return absl::InvalidArgumentError(absl::StrCat("flat: holds ", flat.size(),
                                                   " values but the layout's tensors hold ", total,
                                                   "; flatten a model with the same tensors"));
  }
  Model model;
  model.reserve(layout.size());
  size_t offset = 0;
  for (const NamedTensor& tensor : layout) {
    const size_t count = static_cast<size_t>(NumElements(tensor.shape));
    model.push_back({tensor.name, tensor.shape,
                     std::vector<float>(flat.begin() + offset, flat.begin() + offset + count)});
    offset += count;
  }
  return model;
}

}  // namespace troupe::federation::strategies
