// ModelUpdate: what the federated server sees of a model and of one client's round, with no
// LibTorch, so the server and the strategies compile fast. The client converts its state_dict
// (every entry, BatchNorm running statistics and counters included, as float) into a Model.
//
//   Model global = {{"fc.weight", {10, 512}, weights}, {"fc.bias", {10}, biases}};
//   std::vector<ClientUpdate> updates = {{"client-0", model_0, /*num_samples=*/600}, ...};
//   absl::Status status = ValidateUpdates(global, updates);  // names, shapes, NaN/Inf
//
// A client's tensors must come in the global model's order, with its names and shapes; every
// check returns InvalidArgument naming the client and the tensor, and saying the fix.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace troupe::federation::strategies {

// NamedTensor is one state_dict entry: its name, its shape and its values, row-major.
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Model is a whole state_dict, in the order the client and the server agree on.
using Model = std::vector<NamedTensor>;

// ClientUpdate is one client's model after local training, and how many samples it trained on
// (FedAvg's weight).
struct ClientUpdate {
  std::string client;
  Model model;
  int64_t num_samples = 0;
};

// NumElements is the product of `shape` (1 for a scalar, shape {}).
int64_t NumElements(absl::Span<const int64_t> shape);

// ValidateModel checks one model: unique non-empty names, non-negative dimensions, data sizes
// equal to the shapes' products, finite values. `owner` names the model in errors ("global
// model", "client 'c3'").
absl::Status ValidateModel(const Model& model, absl::string_view owner);

// ValidateUpdates checks the global model, then that there is at least one update, that client
// names are unique, that each update has num_samples >= 1 and the global model's tensor names
// and shapes in its order, and that its values are finite.
absl::Status ValidateUpdates(const Model& global, absl::Span<const ClientUpdate> updates);

// FlattenModel concatenates the tensors' values in order (the layout of a flat parameter vector).
std::vector<float> FlattenModel(const Model& model);

// UnflattenModel splits `flat` into tensors with `layout`'s names and shapes; `flat` must hold
// exactly as many values as `layout`.
absl::StatusOr<Model> UnflattenModel(const Model& layout, absl::Span<const float> flat);

}  // namespace troupe::federation::strategies
