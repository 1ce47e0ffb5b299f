#include "serving/model/weights.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "serving/model/safetensors.h"

namespace troupe::serving::model {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

void AddLinear(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t out, int64_t in,
               Split split, bool bias) {
  specs.push_back({prefix + ".weight", {out, in}, split});
  if (bias) {
    specs.push_back(
        {prefix + ".bias", {out}, split == Split::kDim0 ? Split::kDim0 : Split::kReplicated});
  }
}

void AddNorm(std::vector<TensorSpec>& specs, const std::string& prefix, int64_t h, bool bias) {
  specs.push_back({prefix + ".weight", {h}, Split::kReplicated});
  if (bias) specs.push_back({prefix + ".bias", {h}, Split::kReplicated});
}

// Copies rows [row_begin, row_end) and columns [col_begin, col_end) of a row-major [rows, cols]
// tensor of `from` elements into `out` as `to` elements.
void CopyConverted(const uint8_t* source, TensorDType from, int64_t cols, int64_t row_begin,
                   int64_t row_end, int64_t col_begin, int64_t col_end, gpu::DType to,
                   uint8_t* out) {
  const size_t from_size = TensorDTypeSize(from);
  const size_t to_size = gpu::SizeOf(to);
  const bool same = (from == TensorDType::kF32 && to == gpu::DType::kFloat32) ||
                    (from == TensorDType::kF16 && to == gpu::DType::kFloat16) ||
                    (from == TensorDType::kBF16 && to == gpu::DType::kBFloat16);
  const gpu::DType from_dtype = from == TensorDType::kF32   ? gpu::DType::kFloat32
                                : from == TensorDType::kF16 ? gpu::DType::kFloat16
                                                            : gpu::DType::kBFloat16;
  const int64_t width = col_end - col_begin;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* row = source + (r * cols + col_begin) * from_size;
    uint8_t* dst = out + (r - row_begin) * width * to_size;
    if (same) {
      std::memcpy(dst, row, width * from_size);
      continue;
    }
    for (int64_t c = 0; c < width; ++c) {
      gpu::FromFloat(to, gpu::ToFloat(from_dtype, row + c * from_size), dst + c * to_size);
    }
  }
}

// The rank's row and column ranges of `spec` viewed as [rows, cols] (a vector is [n, 1]).
struct ShardRange {
  int64_t rows, cols, row_begin, row_end, col_begin, col_end;
};

ShardRange RangeOf(const TensorSpec& spec, int rank, int world) {
  const int64_t rows = spec.shape.empty() ? 1 : spec.shape[0];
  int64_t cols = 1;
  for (size_t i = 1; i < spec.shape.size(); ++i) cols *= spec.shape[i];
  ShardRange r{rows, cols, 0, rows, 0, cols};
  if (spec.split == Split::kDim0) {
    r.row_begin = rows / world * rank;
    r.row_end = rows / world * (rank + 1);
  } else if (spec.split == Split::kDim1) {
    r.col_begin = cols / world * rank;
    r.col_end = cols / world * (rank + 1);
  }
  return r;
}

absl::Status CheckRank(const TensorSpec& spec, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", spec.name, ": rank ", rank,
                                                   " of world ", world, " is out of range"));
  }
  return ShardShape(spec, world).status();
}

class CheckpointSource : public WeightSource {
 public:
  explicit CheckpointSource(std::vector<SafetensorsFile> files, std::string path)
      : files_(std::move(files)), path_(std::move(path)) {}

  absl::StatusOr<std::vector<uint8_t>> Load(const TensorSpec& spec, gpu::DType dtype, int rank,
                                            int world) const override {
    if (absl::Status s = CheckRank(spec, rank, world); !s.ok()) return s;
    for (const SafetensorsFile& file : files_) {
      if (!file.Contains(spec.name)) continue;
      absl::StatusOr<TensorView> view = file.Tensor(spec.name);
      if (!view.ok()) return view.status();
      if (view->shape != spec.shape) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor ", spec.name, " in ", file.path(), " has shape ", ShapeString(view->shape),
            " but the model config expects ", ShapeString(spec.shape),
            "; check that the checkpoint matches the model preset or config.json"));
      }
      const ShardRange r = RangeOf(spec, rank, world);
      std::vector<uint8_t> out((r.row_end - r.row_begin) * (r.col_end - r.col_begin) *
                               gpu::SizeOf(dtype));
      CopyConverted(view->bytes.data(), view->dtype, r.cols, r.row_begin, r.row_end, r.col_begin,
                    r.col_end, dtype, out.data());
      return out;
    }
    std::vector<std::string> paths;
    for (const SafetensorsFile& file : files_) paths.push_back(file.path());
    return absl::NotFoundError(absl::StrCat("tensor ", spec.name, " (shape ",
                                            ShapeString(spec.shape), ") is in none of ",
                                            absl::StrJoin(paths, ", ")));
  }

  std::string Describe() const override {
    return absl::StrCat("safetensors checkpoint ", path_, " (", files_.size(), " file",
                        files_.size() == 1 ? "" : "s", ")");
  }

 private:
  std::vector<SafetensorsFile> files_;
  std::string path_;
};

// SplitMix64: a well-mixed 64-bit hash of the element index and the tensor's key.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class RandomSource : public WeightSource {
 public:
  explicit RandomSource(uint64_t seed) : seed_(seed) {}

  absl::StatusOr<std::vector<uint8_t>> Load(const TensorSpec& spec, gpu::DType dtype, int rank,
                                            int world) const override {
    if (absl::Status s = CheckRank(spec, rank, world); !s.ok()) return s;
    // GPT-2 / OPT initialization scale for weights and embeddings; norms near 1, biases small.
    constexpr float kWeightStd = 0.02f;
    const bool norm_weight =
        absl::StrContains(spec.name, "norm") && absl::EndsWith(spec.name, ".weight");
    const bool bias = absl::EndsWith(spec.name, ".bias");
    const float scale = kWeightStd * (bias || norm_weight ? 0.5f : 1.0f);
    const float offset = norm_weight ? 1.0f : 0.0f;
    uint64_t key = seed_;
    for (char c : spec.name) key = Mix(key ^ static_cast<uint8_t>(c));
    const ShardRange r = RangeOf(spec, rank, world);
    const size_t size = gpu::SizeOf(dtype);
    std::vector<uint8_t> out((r.row_end - r.row_begin) * (r.col_end - r.col_begin) * size);
    size_t i = 0;
    for (int64_t row = r.row_begin; row < r.row_end; ++row) {
      for (int64_t col = r.col_begin; col < r.col_end; ++col, ++i) {
        const uint64_t bits = Mix(key ^ static_cast<uint64_t>(row * r.cols + col));
        // Uniform on [-sqrt(3), sqrt(3)): unit variance.
        const float unit =
            (static_cast<float>(bits >> 40) / 16777216.0f * 2.0f - 1.0f) * 1.7320508f;
        gpu::FromFloat(dtype, offset + scale * unit, out.data() + i * size);
      }
    }
    return out;
  }

  std::string Describe() const override { return absl::StrCat("random weights, seed ", seed_); }

 private:
  uint64_t seed_;
};

}  // namespace

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  const int64_t kv = static_cast<int64_t>(c.num_kv_heads) * c.head_dim();
  const int64_t f = c.ffn_size;
  std::vector<TensorSpec> specs;
  if (c.family == ModelFamily::kOpt) {
    specs.push_back({"model.decoder.embed_tokens.weight", {c.vocab_size, h}, Split::kReplicated});
    // OPT's learned positions are offset by 2 (OPTLearnedPositionalEmbedding).
    specs.push_back({"model.decoder.embed_positions.weight",
                     {c.max_position_embeddings + 2, h},
                     Split::kReplicated});
    for (int l = 0; l < c.num_layers; ++l) {
      const std::string p = absl::StrCat("model.decoder.layers.", l);
      AddLinear(specs, p + ".self_attn.q_proj", h, h, Split::kDim0, true);
      AddLinear(specs, p + ".self_attn.k_proj", kv, h, Split::kDim0, true);
      AddLinear(specs, p + ".self_attn.v_proj", kv, h, Split::kDim0, true);
      AddLinear(specs, p + ".self_attn.out_proj", h, h, Split::kDim1, true);
      AddNorm(specs, p + ".self_attn_layer_norm", h, true);
      AddLinear(specs, p + ".fc1", f, h, Split::kDim0, true);
      AddLinear(specs, p + ".fc2", h, f, Split::kDim1, true);
      AddNorm(specs, p + ".final_layer_norm", h, true);
    }
    AddNorm(specs, "model.decoder.final_layer_norm", h, true);
  } else {
    specs.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, Split::kReplicated});
    for (int l = 0; l < c.num_layers; ++l) {
      const std::string p = absl::StrCat("model.layers.", l);
      AddLinear(specs, p + ".self_attn.q_proj", h, h, Split::kDim0, false);
      AddLinear(specs, p + ".self_attn.k_proj", kv, h, Split::kDim0, false);
      AddLinear(specs, p + ".self_attn.v_proj", kv, h, Split::kDim0, false);
      AddLinear(specs, p + ".self_attn.o_proj", h, h, Split::kDim1, false);
      AddLinear(specs, p + ".mlp.gate_proj", f, h, Split::kDim0, false);
      AddLinear(specs, p + ".mlp.up_proj", f, h, Split::kDim0, false);
      AddLinear(specs, p + ".mlp.down_proj", h, f, Split::kDim1, false);
      AddNorm(specs, p + ".input_layernorm", h, false);
      AddNorm(specs, p + ".post_attention_layernorm", h, false);
    }
    AddNorm(specs, "model.norm", h, false);
    specs.push_back({"lm_head.weight", {c.vocab_size, h}, Split::kReplicated});
  }
  return specs;
}

absl::StatusOr<std::vector<int64_t>> ShardShape(const TensorSpec& spec, int world) {
  std::vector<int64_t> shape = spec.shape;
  if (spec.split == Split::kReplicated || world == 1) return shape;
  const size_t dim = spec.split == Split::kDim0 ? 0 : 1;
  if (dim >= shape.size() || shape[dim] % world != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", spec.name, " of shape ", ShapeString(spec.shape), ": dimension ",
                     dim, " does not split into ", world,
                     " tensor-parallel shards; pick a tensor-parallel size "
                     "that divides the heads and the MLP width"));
  }
  shape[dim] /= world;
  return shape;
}

absl::StatusOr<std::unique_ptr<WeightSource>> OpenCheckpoint(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", path,
                                            " does not exist; pass a .safetensors file or the "
                                            "directory that holds them"));
  }
  std::vector<std::string> paths;
  if (S_ISDIR(info.st_mode)) {
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) return absl::PermissionDeniedError(absl::StrCat("cannot list ", path));
    while (const dirent* entry = readdir(dir)) {
      if (absl::EndsWith(entry->d_name, ".safetensors")) {
        paths.push_back(absl::StrCat(path, "/", entry->d_name));
      }
    }
    closedir(dir);
    std::sort(paths.begin(), paths.end());
    if (paths.empty()) {
      return absl::NotFoundError(
          absl::StrCat("checkpoint directory ", path, " holds no .safetensors file"));
    }
  } else {
    paths.push_back(path);
  }
  std::vector<SafetensorsFile> files;
  for (const std::string& p : paths) {
    absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(p);
    if (!file.ok()) return file.status();
    files.push_back(*std::move(file));
  }
  return std::unique_ptr<WeightSource>(new CheckpointSource(std::move(files), path));
}

std::unique_ptr<WeightSource> RandomWeights(uint64_t seed) {
  return std::make_unique<RandomSource>(seed);
}

}  // namespace troupe::serving::model
