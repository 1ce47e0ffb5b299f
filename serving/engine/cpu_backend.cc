// The only translation unit of serving/ that includes LibTorch (its headers compile slowly).
#include "serving/engine/cpu_backend.h"

#include <torch/torch.h>

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

class CpuBackend : public ForwardBackend {
 public:
  CpuBackend(ModelConfig config, int num_kv_blocks)
      : config_(std::move(config)), num_kv_blocks_(num_kv_blocks) {}

  absl::Status Load(const model::WeightSource& weights) {
    torch::NoGradGuard no_grad;
    std::map<std::string, torch::Tensor> tensors;
    for (const model::TensorSpec& spec : model::ExpectedTensors(config_)) {
      absl::StatusOr<std::vector<uint8_t>> bytes =
          weights.Load(spec, gpu::DType::kFloat32, /*rank=*/0, /*world=*/1);
      if (!bytes.ok()) return bytes.status();
      tensors[spec.name] = torch::from_blob(bytes->data(), spec.shape, torch::kFloat32).clone();
    }
    const bool opt = config_.family == ModelFamily::kOpt;
    auto get = [&](const std::string& name) { return tensors.at(name); };
    const std::string root = opt ? "model.decoder." : "model.";
    embed_ = get(root + "embed_tokens.weight");
    if (opt) {
      positions_ = get("model.decoder.embed_positions.weight");
      final_w_ = get("model.decoder.final_layer_norm.weight");
      final_b_ = get("model.decoder.final_layer_norm.bias");
      head_ = embed_;  // OPT ties the output head to the token embedding.
    } else {
      final_w_ = get("model.norm.weight");
      head_ = get("lm_head.weight");
      // Rotary inverse frequencies (RoFormer; Hugging Face LLaMA's rotate_half layout).
      const int d = config_.head_dim();
      inv_freq_ = torch::pow(config_.rope_theta,
                             -torch::arange(0, d, 2, torch::kFloat64) / static_cast<double>(d))
                      .to(torch::kFloat32);
    }
    const auto cache_shape = std::vector<int64_t>{num_kv_blocks_, config_.num_kv_heads,
                                                  kKvBlockTokens, config_.head_dim()};
    for (int l = 0; l < config_.num_layers; ++l) {
      const std::string p = absl::StrCat(root, "layers.", l, ".");
      Layer layer;
      internal::GetLayerWeights(p, opt, get, layer);
      layer.k_cache = torch::zeros(cache_shape, torch::kFloat32);
      layer.v_cache = torch::zeros(cache_shape, torch::kFloat32);
      layers_.push_back(std::move(layer));
    }
    return absl::OkStatus();
  }

  const ModelConfig& config() const override { return config_; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  gpu::DType kv_dtype() const override { return gpu::DType::kFloat32; }

  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                const KvRange& range) const override {
    absl::StatusOr<torch::Tensor> index = BlockIndex(blocks);
    if (!index.ok()) return index.status();
    absl::StatusOr<KvRange> r = KvRangeOf(range, config_);
    if (!r.ok()) return r.status();
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> parts;
    for (int l = r->layer_begin; l < r->layer_end; ++l) {
      for (const torch::Tensor* cache : {&layers_[l].k_cache, &layers_[l].v_cache}) {
        parts.push_back(cache->index_select(0, *index)
                            .index({Slice(), Slice(r->head_begin, r->head_end)})
                            .contiguous()
                            .view(-1));
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
    absl::StatusOr<KvRange> r = KvRangeOf(range, config_);
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
      for (torch::Tensor* cache : {&layers_[l].k_cache, &layers_[l].v_cache}) {
        const torch::Tensor values = all.index({Slice(offset, offset + part)})
                                         .view({static_cast<int64_t>(blocks.size()), heads,
                                                kKvBlockTokens, config_.head_dim()});
        cache->index({Slice(), Slice(r->head_begin, r->head_end)}).index_put_({*index}, values);
        offset += part;
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::vector<float>>> Forward(
      const std::vector<SequenceStep>& batch) override {
    for (const SequenceStep& step : batch) {
      if (absl::Status valid = ValidateStep(step, config_, num_kv_blocks_); !valid.ok()) {
        return valid;
      }
    }
    if (batch.empty()) return std::vector<std::vector<float>>{};
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
    torch::Tensor x = embed_.index_select(0, as_tensor(ids));
    if (opt) x = x + positions_.index_select(0, position_t + 2);  // OPT's offset of 2
    torch::Tensor cos, sin;
    if (!opt) {
      const torch::Tensor angles =
          position_t.to(torch::kFloat32).unsqueeze(1) * inv_freq_.unsqueeze(0);  // [T, d/2]
      cos = torch::cat({angles.cos(), angles.cos()}, 1).unsqueeze(1);            // [T, 1, d]
      sin = torch::cat({angles.sin(), angles.sin()}, 1).unsqueeze(1);
    }
    const int64_t tokens = static_cast<int64_t>(ids.size());
    const int heads = config_.num_heads;
    const int kv_heads = config_.num_kv_heads;
    const int d = config_.head_dim();
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    for (Layer& layer : layers_) {
      torch::Tensor h = Norm(x, layer.norm1_w, layer.norm1_b);
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
            std::vector<int64_t>(step.block_table.begin(), step.block_table.begin() + num_blocks),
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
        const torch::Tensor query = q.index({Slice(row, row + n)}).transpose(0, 1);  // [H, n, d]
        torch::Tensor scores = torch::matmul(query, keys.transpose(1, 2)) * scale;   // [H, n, L]
        // Causal: new token i (position cached + i) sees keys at positions <= cached + i.
        const torch::Tensor key_pos = torch::arange(length, torch::kInt64).unsqueeze(0);
        const torch::Tensor query_pos =
            torch::arange(step.cached_tokens, length, torch::kInt64).unsqueeze(1);
        scores = scores.masked_fill(key_pos > query_pos, -std::numeric_limits<float>::infinity());
        const torch::Tensor attended = torch::matmul(torch::softmax(scores, -1), values);
        outputs.push_back(attended.transpose(0, 1).reshape({n, heads * d}));
        row += n;
      }
      x = x + torch::linear(torch::cat(outputs, 0), layer.wo, layer.bo);
      h = Norm(x, layer.norm2_w, layer.norm2_b);
      if (opt) {
        x = x +
            torch::linear(torch::relu(torch::linear(h, layer.w1, layer.b1)), layer.w2, layer.b2);
      } else {
        x = x +
            torch::linear(torch::silu(torch::linear(h, layer.gate)) * torch::linear(h, layer.up),
                          layer.down);
      }
    }
    const torch::Tensor last = Norm(x.index_select(0, as_tensor(last_rows)), final_w_, final_b_);
    const torch::Tensor logits = torch::matmul(last, head_.t()).contiguous();
    std::vector<std::vector<float>> result(batch.size());
    for (size_t s = 0; s < batch.size(); ++s) {
      const float* data = logits[s].data_ptr<float>();
      result[s].assign(data, data + config_.vocab_size);
    }
    return result;
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
  torch::Tensor embed_, positions_, final_w_, final_b_, head_, inv_freq_;
  std::vector<Layer> layers_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCpuBackend(const ModelConfig& config,
                                                                 const model::WeightSource& weights,
                                                                 const CpuBackendOptions& options) {
  if (absl::Status valid = model::Validate(config); !valid.ok()) return valid;
  if (options.num_kv_blocks <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("CpuBackendOptions.num_kv_blocks is ",
                                                   options.num_kv_blocks, "; it must be positive"));
  }
  auto backend = std::make_unique<CpuBackend>(config, options.num_kv_blocks);
  if (absl::Status loaded = backend->Load(weights); !loaded.ok()) return loaded;
  return std::unique_ptr<ForwardBackend>(std::move(backend));
}

}  // namespace troupe::serving::engine
