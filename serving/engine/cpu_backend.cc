// The only translation unit of serving/ that includes LibTorch (its headers compile slowly).
#include "serving/engine/cpu_backend.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "serving/engine/internal/layer_weights.h"

namespace troupe::serving::engine {
namespace {

using model::ModelConfig;
using model::ModelFamily;
using torch::indexing::Slice;

struct Layer {
  torch::Tensor norm1_w, norm1_b, norm2_w, norm2_b;  // biases: OPT only
  torch::Tensor wq, bq, wk, bk, wv, bv, wo, bo;      // biases: OPT only
  torch::Tensor w1, b1, w2, b2;                      // OPT: fc1, fc2
  torch::Tensor gate, up, down;                      // LLaMA
  torch::Tensor k_cache, v_cache;                    // [blocks, kv_heads, 16, head_dim]
};

// CpuStage runs layers [layer_begin, layer_end) of a model (all of them in a CpuBackend).
class CpuStage : public StageBackend {
 public:
  CpuStage(ModelConfig config, int num_kv_blocks, int layer_begin, int layer_end, int tp)
      : config_(std::move(config)),
        num_kv_blocks_(num_kv_blocks),
        layer_begin_(layer_begin),
        layer_end_(layer_end),
        tp_(tp) {}

  // Load reads the tensors this stage needs, and only those.
  absl::Status Load(const model::WeightSource& weights) {
    torch::NoGradGuard no_grad;
    std::map<std::string, model::TensorSpec> specs;
    for (model::TensorSpec& spec : model::ExpectedTensors(config_)) specs[spec.name] = spec;
    absl::Status failed;
    int rank = 0, world = 1;  // the shard `get` loads: Megatron's split of the tensor
    auto get = [&](const std::string& name) -> torch::Tensor {
      const model::TensorSpec& spec = specs.at(name);
      absl::StatusOr<std::vector<int64_t>> shape = model::ShardShape(spec, world);
      absl::StatusOr<std::vector<uint8_t>> bytes =
          shape.ok() ? weights.Load(spec, gpu::DType::kFloat32, rank, world)
                     : absl::StatusOr<std::vector<uint8_t>>(shape.status());
      if (!bytes.ok()) {
        if (failed.ok()) failed = bytes.status();
        return torch::Tensor();
      }
      return torch::from_blob(bytes->data(), *shape, torch::kFloat32).clone();
    };
    const bool opt = config_.family == ModelFamily::kOpt;
    const std::string root = opt ? "model.decoder." : "model.";
    // The embedding: on the first stage, and on the last of OPT, whose output head it is.
    if (first() || (last() && opt)) embed_ = get(root + "embed_tokens.weight");
    if (opt && first()) positions_ = get("model.decoder.embed_positions.weight");
    if (opt && last()) {
      final_w_ = get("model.decoder.final_layer_norm.weight");
      final_b_ = get("model.decoder.final_layer_norm.bias");
      head_ = embed_;  // OPT ties the output head to the token embedding.
    } else if (last()) {
      final_w_ = get("model.norm.weight");
      head_ = get("lm_head.weight");
    }
    if (!opt) {
      // Rotary inverse frequencies (RoFormer; Hugging Face LLaMA's rotate_half layout).
      const int d = config_.head_dim();
      inv_freq_ = torch::pow(config_.rope_theta,
                             -torch::arange(0, d, 2, torch::kFloat64) / static_cast<double>(d))
                      .to(torch::kFloat32);
    }
    // Each tensor-parallel rank holds its heads' and its FFN columns' shards, and its heads' KV.
    const auto cache_shape = std::vector<int64_t>{num_kv_blocks_, config_.num_kv_heads / tp_,
                                                  kKvBlockTokens, config_.head_dim()};
    world = tp_;
    shards_.resize(tp_);
    for (rank = 0; rank < tp_; ++rank) {
      for (int l = layer_begin_; l < layer_end_; ++l) {
        const std::string p = absl::StrCat(root, "layers.", l, ".");
        Layer layer;
        internal::GetLayerWeights(p, opt, get, layer);
        layer.k_cache = torch::zeros(cache_shape, torch::kFloat32);
        layer.v_cache = torch::zeros(cache_shape, torch::kFloat32);
        shards_[rank].push_back(std::move(layer));
      }
    }
    return failed;
  }

  const ModelConfig& config() const override { return config_; }
  int layer_begin() const override { return layer_begin_; }
  int layer_end() const override { return layer_end_; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  gpu::DType kv_dtype() const override { return gpu::DType::kFloat32; }

  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                const KvRange& range) const override {
    absl::StatusOr<torch::Tensor> index = BlockIndex(blocks);
    if (!index.ok()) return index.status();
    absl::StatusOr<KvRange> r = StageRange(range);
    if (!r.ok()) return r.status();
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> parts;
    for (int l = r->layer_begin; l < r->layer_end; ++l) {
      for (const bool keys : {true, false}) {
        // The range's heads, from the ranks that hold them, side by side: [blocks, heads, 16, d].
        std::vector<torch::Tensor> heads;
        for (const HeadSlice& h : HeadSlices(*r)) {
          const Layer& layer = shards_[h.rank][l - layer_begin_];
          heads.push_back((keys ? layer.k_cache : layer.v_cache)
                              .index_select(0, *index)
                              .index({Slice(), Slice(h.local_begin, h.local_end)}));
        }
        parts.push_back(torch::cat(heads, 1).contiguous().view(-1));
      }
    }
    const torch::Tensor all = torch::cat(parts);
    const auto* data = reinterpret_cast<const uint8_t*>(all.data_ptr<float>());
    return std::vector<uint8_t>(data, data + all.numel() * sizeof(float));
  }

  absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                        const std::vector<uint8_t>& bytes) override {
    absl::StatusOr<torch::Tensor> index = BlockIndex(blocks);
    if (!index.ok()) return index.status();
    absl::StatusOr<KvRange> r = StageRange(range);
    if (!r.ok()) return r.status();
    const int64_t expected = KvBytes(config_, kv_dtype(), blocks.size(), *r);
    if (static_cast<int64_t>(bytes.size()) != expected) {
      return absl::InvalidArgumentError(absl::StrCat("ImportKv: ", bytes.size(), " bytes for ",
                                                     blocks.size(), " blocks of this range; ",
                                                     expected, " expected"));
    }
    torch::NoGradGuard no_grad;
    const int64_t heads = r->head_end - r->head_begin;
    const torch::Tensor all =
        torch::from_blob(const_cast<uint8_t*>(bytes.data()), {expected / 4}, torch::kFloat32);
    const int64_t part =
        static_cast<int64_t>(blocks.size()) * heads * kKvBlockTokens * config_.head_dim();
    int64_t offset = 0;
    for (int l = r->layer_begin; l < r->layer_end; ++l) {
      for (const bool keys : {true, false}) {
        const torch::Tensor values = all.index({Slice(offset, offset + part)})
                                         .view({static_cast<int64_t>(blocks.size()), heads,
                                                kKvBlockTokens, config_.head_dim()});
        for (const HeadSlice& h : HeadSlices(*r)) {
          Layer& layer = shards_[h.rank][l - layer_begin_];
          (keys ? layer.k_cache : layer.v_cache)
              .index({Slice(), Slice(h.local_begin, h.local_end)})
              .index_put_({*index}, values.index({Slice(), Slice(h.range_begin, h.range_end)}));
        }
        offset += part;
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<float>> Run(const std::vector<SequenceStep>& batch,
                                         const std::vector<float>& hidden) override {
    if (batch.empty()) return std::vector<float>{};
    torch::NoGradGuard no_grad;
    // Pack the new tokens of every sequence: token ids, positions, and cache slots.
    std::vector<int64_t> ids, positions, blocks, slots, last_rows;
    for (const SequenceStep& step : batch) {
      for (size_t i = 0; i < step.tokens.size(); ++i) {
        const int64_t position = step.cached_tokens + static_cast<int64_t>(i);
        ids.push_back(step.tokens[i]);
        positions.push_back(position);
        blocks.push_back(step.block_table[position / kKvBlockTokens]);
        slots.push_back(position % kKvBlockTokens);
      }
      last_rows.push_back(static_cast<int64_t>(ids.size()) - 1);
    }
    const auto as_tensor = [](const std::vector<int64_t>& v) {
      return torch::tensor(v, torch::kInt64);
    };
    const torch::Tensor position_t = as_tensor(positions);
    const torch::Tensor block_t = as_tensor(blocks);
    const torch::Tensor slot_t = as_tensor(slots);
    const bool opt = config_.family == ModelFamily::kOpt;
    const int64_t tokens = static_cast<int64_t>(ids.size());
    torch::Tensor x;
    if (first()) {
      x = embed_.index_select(0, as_tensor(ids));
      if (opt) x = x + positions_.index_select(0, position_t + 2);  // OPT's offset of 2
    } else {
      if (static_cast<int64_t>(hidden.size()) != tokens * config_.hidden_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "stage [", layer_begin_, ", ", layer_end_, "): ", hidden.size(),
            " hidden values for ", tokens, " tokens of width ", config_.hidden_size));
      }
      x = torch::from_blob(const_cast<float*>(hidden.data()), {tokens, config_.hidden_size},
                           torch::kFloat32);
    }
    torch::Tensor cos, sin;
    if (!opt) {
      const torch::Tensor angles =
          position_t.to(torch::kFloat32).unsqueeze(1) * inv_freq_.unsqueeze(0);  // [T, d/2]
      cos = torch::cat({angles.cos(), angles.cos()}, 1).unsqueeze(1);            // [T, 1, d]
      sin = torch::cat({angles.sin(), angles.sin()}, 1).unsqueeze(1);
    }
    // Each tensor-parallel rank runs its heads and FFN columns; their partial outputs are summed
    // (the all-reduce of Megatron's row-parallel layers) before the residual add.
    const int heads = config_.num_heads / tp_;
    const int kv_heads = config_.num_kv_heads / tp_;
    const int d = config_.head_dim();
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    const auto sum = [](torch::Tensor total, const torch::Tensor& part) {
      return total.defined() ? total + part : part;
    };
    for (size_t li = 0; li < shards_[0].size(); ++li) {
      const Layer& replicated = shards_[0][li];  // norms and row-parallel biases
      torch::Tensor h = Norm(x, replicated.norm1_w, replicated.norm1_b);
      torch::Tensor attention;
      for (int rank = 0; rank < tp_; ++rank) {
        Layer& layer = shards_[rank][li];
        torch::Tensor q = torch::linear(h, layer.wq, layer.bq).view({tokens, heads, d});
        torch::Tensor k = torch::linear(h, layer.wk, layer.bk).view({tokens, kv_heads, d});
        torch::Tensor v = torch::linear(h, layer.wv, layer.bv).view({tokens, kv_heads, d});
        if (!opt) {
          q = q * cos + RotateHalf(q) * sin;
          k = k * cos + RotateHalf(k) * sin;
        }
        // The new keys and values go into their slots: [blocks, 16, kv_heads, d] views.
        layer.k_cache.permute({0, 2, 1, 3}).index_put_({block_t, slot_t}, k);
        layer.v_cache.permute({0, 2, 1, 3}).index_put_({block_t, slot_t}, v);
        std::vector<torch::Tensor> outputs;
        int64_t row = 0;
        for (const SequenceStep& step : batch) {
          const int64_t n = static_cast<int64_t>(step.tokens.size());
          const int64_t length = step.cached_tokens + n;
          const int64_t num_blocks = (length + kKvBlockTokens - 1) / kKvBlockTokens;
          const torch::Tensor table = torch::tensor(
              std::vector<int64_t>(step.block_table.begin(),
                                   step.block_table.begin() + num_blocks),
              torch::kInt64);
          // [kv_heads, length, d]: the sequence's keys and values in position order.
          const auto gather = [&](const torch::Tensor& cache) {
            return cache.index_select(0, table)
                .permute({1, 0, 2, 3})
                .reshape({kv_heads, num_blocks * kKvBlockTokens, d})
                .index({Slice(), Slice(0, length)})
                .repeat_interleave(heads / kv_heads, 0);
          };
          const torch::Tensor keys = gather(layer.k_cache);
          const torch::Tensor values = gather(layer.v_cache);
          const torch::Tensor query = q.index({Slice(row, row + n)}).transpose(0, 1);  // [H,n,d]
          torch::Tensor scores = torch::matmul(query, keys.transpose(1, 2)) * scale;  // [H, n, L]
          // Causal: new token i (position cached + i) sees keys at positions <= cached + i.
          const torch::Tensor key_pos = torch::arange(length, torch::kInt64).unsqueeze(0);
          const torch::Tensor query_pos =
              torch::arange(step.cached_tokens, length, torch::kInt64).unsqueeze(1);
          scores =
              scores.masked_fill(key_pos > query_pos, -std::numeric_limits<float>::infinity());
          const torch::Tensor attended = torch::matmul(torch::softmax(scores, -1), values);
          outputs.push_back(attended.transpose(0, 1).reshape({n, heads * d}));
          row += n;
        }
        // One rank adds the bias inside its product, as the whole model does.
        attention = sum(attention, torch::linear(torch::cat(outputs, 0), layer.wo,
                                                 rank == 0 ? layer.bo : torch::Tensor()));
      }
      x = x + attention;
      h = Norm(x, replicated.norm2_w, replicated.norm2_b);
      torch::Tensor mlp;
      for (int rank = 0; rank < tp_; ++rank) {
        const Layer& layer = shards_[rank][li];
        mlp = sum(mlp, opt ? torch::linear(torch::relu(torch::linear(h, layer.w1, layer.b1)),
                                           layer.w2, rank == 0 ? layer.b2 : torch::Tensor())
                           : torch::linear(torch::silu(torch::linear(h, layer.gate)) *
                                               torch::linear(h, layer.up),
                                           layer.down));
      }
      x = x + mlp;
    }
    if (!last()) {  // the hidden states go on to the next stage
      const torch::Tensor out = x.contiguous();
      return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
    }
    const torch::Tensor rows = Norm(x.index_select(0, as_tensor(last_rows)), final_w_, final_b_);
    const torch::Tensor logits = torch::matmul(rows, head_.t()).contiguous();
    return std::vector<float>(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
  }

 private:
  // LayerNorm (OPT, with bias) or RMSNorm (LLaMA) over the last dimension.
  torch::Tensor Norm(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias) const {
    if (config_.family == ModelFamily::kOpt) {
      return torch::layer_norm(x, {config_.hidden_size}, weight, bias, config_.norm_epsilon);
    }
    return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + config_.norm_epsilon) * weight;
  }

  // HeadSlice is the part of a KV head range that one tensor-parallel rank holds: its local
  // heads [local_begin, local_end), which are the range's [range_begin, range_end).
  struct HeadSlice {
    int rank, local_begin, local_end, range_begin, range_end;
  };

  std::vector<HeadSlice> HeadSlices(const KvRange& r) const {
    const int per_rank = config_.num_kv_heads / tp_;
    std::vector<HeadSlice> slices;
    for (int rank = 0; rank < tp_; ++rank) {
      const int begin = std::max(r.head_begin, rank * per_rank);
      const int end = std::min(r.head_end, (rank + 1) * per_rank);
      if (begin >= end) continue;
      slices.push_back({rank, begin - rank * per_rank, end - rank * per_rank,
                        begin - r.head_begin, end - r.head_begin});
    }
    return slices;
  }

  // StageRange resolves `range` and checks that its layers are this stage's.
  absl::StatusOr<KvRange> StageRange(const KvRange& range) const {
    absl::StatusOr<KvRange> r = KvRangeOf(range, config_);
    if (!r.ok()) return r.status();
    if (r->layer_begin < layer_begin_ || r->layer_end > layer_end_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "KV layers [", r->layer_begin, ", ", r->layer_end, ") are not all in this stage's [",
          layer_begin_, ", ", layer_end_, "); ask the stage that holds them"));
    }
    return r;
  }

  // BlockIndex is `blocks` as an index tensor, or an error naming the first bad block.
  absl::StatusOr<torch::Tensor> BlockIndex(const std::vector<int32_t>& blocks) const {
    for (int32_t block : blocks) {
      if (block < 0 || block >= num_kv_blocks_) {
        return absl::InvalidArgumentError(absl::StrCat(
            "KV block ", block, " is outside the cache's ", num_kv_blocks_, " blocks"));
      }
    }
    return torch::tensor(std::vector<int64_t>(blocks.begin(), blocks.end()), torch::kInt64);
  }

  // RotateHalf maps (x1, x2) halves of the last dimension to (-x2, x1).
  static torch::Tensor RotateHalf(const torch::Tensor& x) {
    const int64_t half = x.size(-1) / 2;
    return torch::cat(
        {-x.index({"...", Slice(half, torch::indexing::None)}), x.index({"...", Slice(0, half)})},
        -1);
  }

  ModelConfig config_;
  int num_kv_blocks_;
  int layer_begin_, layer_end_;
  int tp_;  // tensor-parallel ranks
  torch::Tensor embed_, positions_, final_w_, final_b_, head_, inv_freq_;
  std::vector<std::vector<Layer>> shards_;  // [rank][layer - layer_begin_]
};

// CpuBackend is the whole model as one stage.
class CpuBackend : public ForwardBackend {
 public:
  explicit CpuBackend(std::unique_ptr<CpuStage> model) : model_(std::move(model)) {}

  const ModelConfig& config() const override { return model_->config(); }
  int num_kv_blocks() const override { return model_->num_kv_blocks(); }
  gpu::DType kv_dtype() const override { return model_->kv_dtype(); }

  absl::StatusOr<std::vector<std::vector<float>>> Forward(
      const std::vector<SequenceStep>& batch) override {
    for (const SequenceStep& step : batch) {
      if (absl::Status valid = ValidateStep(step, config(), num_kv_blocks()); !valid.ok()) {
        return valid;
      }
    }
    absl::StatusOr<std::vector<float>> logits = model_->Run(batch, {});
    if (!logits.ok()) return logits.status();
    return LogitRows(logits->data(), static_cast<int64_t>(batch.size()), config().vocab_size);
  }

  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                const KvRange& range) const override {
    return model_->ExportKv(blocks, range);
  }
  absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                        const std::vector<uint8_t>& bytes) override {
    return model_->ImportKv(blocks, range, bytes);
  }

 private:
  std::unique_ptr<CpuStage> model_;
};

absl::StatusOr<std::unique_ptr<CpuStage>> LoadStage(const ModelConfig& config,
                                                    const model::WeightSource& weights,
                                                    const CpuBackendOptions& options) {
  if (absl::Status valid = model::Validate(config); !valid.ok()) return valid;
  if (options.num_kv_blocks <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("CpuBackendOptions.num_kv_blocks is ",
                                                   options.num_kv_blocks, "; it must be positive"));
  }
  const int end = options.layer_end < 0 ? config.num_layers : options.layer_end;
  if (options.layer_begin < 0 || options.layer_begin >= end || end > config.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CpuBackendOptions layers [", options.layer_begin, ", ", options.layer_end,
        ") are not a non-empty range of the model's ", config.num_layers, " layers"));
  }
  const int tp = options.tensor_parallel;
  if (tp < 1 || config.num_heads % tp != 0 || config.num_kv_heads % tp != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CpuBackendOptions.tensor_parallel is ", tp, "; it must be at least 1 and divide ",
        config.name, "'s ", config.num_heads, " heads and ", config.num_kv_heads, " KV heads"));
  }
  auto stage =
      std::make_unique<CpuStage>(config, options.num_kv_blocks, options.layer_begin, end, tp);
  if (absl::Status loaded = stage->Load(weights); !loaded.ok()) return loaded;
  return stage;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCpuBackend(const ModelConfig& config,
                                                                 const model::WeightSource& weights,
                                                                 const CpuBackendOptions& options) {
  CpuBackendOptions whole = options;
  whole.layer_begin = 0;
  whole.layer_end = -1;
  absl::StatusOr<std::unique_ptr<CpuStage>> model = LoadStage(config, weights, whole);
  if (!model.ok()) return model.status();
  return std::unique_ptr<ForwardBackend>(std::make_unique<CpuBackend>(*std::move(model)));
}

absl::StatusOr<std::unique_ptr<StageBackend>> CreateCpuStage(const ModelConfig& config,
                                                             const model::WeightSource& weights,
                                                             const CpuBackendOptions& options) {
  absl::StatusOr<std::unique_ptr<CpuStage>> stage = LoadStage(config, weights, options);
  if (!stage.ok()) return stage.status();
  return std::unique_ptr<StageBackend>(*std::move(stage));
}

}  // namespace troupe::serving::engine
