// The weights a model config needs, by Hugging Face tensor name, and the two places they come
// from: safetensors checkpoints (memory-mapped, converted to the serving dtype and sharded for
// tensor parallelism) or a seeded random initialization. Both give a rank the same shard of the
// same full tensor, so a model split over N GPUs computes what the unsplit model computes.
//
//   std::vector<TensorSpec> specs = ExpectedTensors(config);
//   absl::StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint("/models/opt-13b");
//   absl::StatusOr<std::vector<uint8_t>> wq = (*source)->Load(specs[3], gpu::DType::kFloat16,
//                                                             /*rank=*/0, /*world=*/2);
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/dtype.h"
#include "serving/model/config.h"

namespace troupe::serving::model {

// Split is how tensor parallelism (Megatron-LM) divides a tensor among ranks. Linear weights are
// [out, in] as in PyTorch:
//   kReplicated  every rank holds all of it (embeddings, norms, row-parallel biases);
//   kDim0        column-parallel layers (q, k, v, fc1, gate, up) and their biases: output rows;
//   kDim1        row-parallel layers (out/o projection, fc2, down): input columns.
enum class Split { kReplicated, kDim0, kDim1 };

struct TensorSpec {
  std::string name;  // The Hugging Face name, e.g. "model.decoder.layers.3.fc1.weight".
  std::vector<int64_t> shape;
  Split split = Split::kReplicated;
};

// ExpectedTensors lists every tensor of `config`'s model (the tied output head of OPT is the
// token embedding and is not listed).
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

// ShardShape is `spec`'s shape on one of `world` ranks; an error (naming the tensor, the
// dimension and the world size) when the dimension does not divide.
absl::StatusOr<std::vector<int64_t>> ShardShape(const TensorSpec& spec, int world);

// WeightSource produces a rank's shard of a tensor, converted to `dtype`, as bytes.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual absl::StatusOr<std::vector<uint8_t>> Load(const TensorSpec& spec, gpu::DType dtype,
                                                    int rank, int world) const = 0;
  // Describe says where the weights come from (for logs).
  virtual std::string Describe() const = 0;
};

// OpenCheckpoint opens a safetensors checkpoint: one file, or a directory whose *.safetensors
// files hold the tensors (sharded checkpoints, as Hugging Face saves them). A tensor that is in
// no file, or whose shape is not the config's, is an error naming the tensor, the expected
// shape and the file(s).
absl::StatusOr<std::unique_ptr<WeightSource>> OpenCheckpoint(const std::string& path);

// RandomWeights is a seeded random initialization: linear weights and embeddings uniform with
// standard deviation 0.02 (GPT-2's and OPT's init), norm weights 1 + small noise, biases small.
// Element i of a tensor depends only on (seed, name, i), so every rank's shard is a slice of the
// same full tensor.
std::unique_ptr<WeightSource> RandomWeights(uint64_t seed);

}  // namespace troupe::serving::model
