// CpuBackend's forward pass (cpu_backend.cc) as loops: the same packing, norms, projections,
// rotary angles, cache slots and causal masking, with double accumulators.
#include "serving/engine/cuda_backend_reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "serving/engine/internal/layer_weights.h"

namespace troupe::serving::engine {
namespace {

using model::ModelConfig;
using model::ModelFamily;

struct Layer {
  const std::vector<float>*norm1_w, *norm1_b, *norm2_w, *norm2_b;  // biases: OPT only
  const std::vector<float>*wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;  // biases: OPT only
  const std::vector<float>*w1, *b1, *w2, *b2;                      // OPT: fc1, fc2
  const std::vector<float>*gate, *up, *down;                       // LLaMA
  std::vector<float> k_cache, v_cache;  // [blocks, kv_heads, 16, head_dim]
};

// Products of at least this many multiply-adds (the output head's) are split over threads.
constexpr int64_t kThreadedWork = int64_t{1} << 24;
constexpr int kMaxThreads = 16;

// Linear writes out[m, n] = in[m, k] · w[n, k]ᵀ + bias (bias may be null).
std::vector<float> Linear(const std::vector<float>& in, int64_t m, int64_t k,
                          const std::vector<float>& w, const std::vector<float>* bias) {
  const int64_t n = static_cast<int64_t>(w.size()) / k;
  std::vector<float> out(m * n);
  const auto columns = [&](int64_t begin, int64_t end) {
    for (int64_t r = 0; r < m; ++r) {
      const float* row = in.data() + r * k;
      for (int64_t c = begin; c < end; ++c) {
        const float* weight = w.data() + c * k;
        double sum = bias != nullptr ? (*bias)[c] : 0.0;
        for (int64_t i = 0; i < k; ++i) sum += static_cast<double>(row[i]) * weight[i];
        out[r * n + c] = static_cast<float>(sum);
      }
    }
  };
  const int threads =
      m * n * k < kThreadedWork
          ? 1
          : std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxThreads);
  if (threads == 1) {
    columns(0, n);
    return out;
  }
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back(columns, n * t / threads, n * (t + 1) / threads);
  }
  for (std::thread& thread : pool) thread.join();
  return out;
}

class ReferenceBackend : public ForwardBackend {
 public:
  ReferenceBackend(ModelConfig config, int num_kv_blocks)
      : config_(std::move(config)), num_kv_blocks_(num_kv_blocks) {}

  absl::Status Load(const model::WeightSource& weights) {
    for (const model::TensorSpec& spec : model::ExpectedTensors(config_)) {
      absl::StatusOr<std::vector<uint8_t>> bytes =
          weights.Load(spec, gpu::DType::kFloat32, /*rank=*/0, /*world=*/1);
      if (!bytes.ok()) return bytes.status();
      std::vector<float> values(bytes->size() / sizeof(float));
      std::memcpy(values.data(), bytes->data(), values.size() * sizeof(float));
      tensors_[spec.name] = std::move(values);
    }
    const bool opt = config_.family == ModelFamily::kOpt;
    auto get = [&](const std::string& name) { return &tensors_.at(name); };
    const std::string root = opt ? "model.decoder." : "model.";
    embed_ = get(root + "embed_tokens.weight");
    if (opt) {
      positions_ = get("model.decoder.embed_positions.weight");
      final_w_ = get("model.decoder.final_layer_norm.weight");
      final_b_ = get("model.decoder.final_layer_norm.bias");
      head_ = embed_;
    } else {
      final_w_ = get("model.norm.weight");
      head_ = get("lm_head.weight");
      const int d = config_.head_dim();
      for (int i = 0; i < d; i += 2) {
        inv_freq_.push_back(static_cast<float>(
            std::pow(static_cast<double>(config_.rope_theta), -static_cast<double>(i) / d)));
      }
    }
    const size_t cache_size = static_cast<size_t>(num_kv_blocks_) * config_.num_kv_heads *
                              kKvBlockTokens * config_.head_dim();
    for (int l = 0; l < config_.num_layers; ++l) {
      const std::string p = absl::StrCat(root, "layers.", l, ".");
      Layer layer{};
      internal::GetLayerWeights(p, opt, get, layer);
      layer.k_cache.assign(cache_size, 0.0f);
      layer.v_cache.assign(cache_size, 0.0f);
      layers_.push_back(std::move(layer));
    }
    return absl::OkStatus();
  }

  const ModelConfig& config() const override { return config_; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  gpu::DType kv_dtype() const override { return gpu::DType::kFloat32; }

  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                const KvRange& range) const override {
    if (absl::Status valid = CheckBlocks(blocks); !valid.ok()) return valid;
    absl::StatusOr<KvRange> r = KvRangeOf(range, config_);
    if (!r.ok()) return r.status();
    std::vector<float> values;
    const size_t run = static_cast<size_t>(kKvBlockTokens) * config_.head_dim();
    for (int l = r->layer_begin; l < r->layer_end; ++l) {
      for (const std::vector<float>* cache : {&layers_[l].k_cache, &layers_[l].v_cache}) {
        for (int32_t block : blocks) {
          for (int head = r->head_begin; head < r->head_end; ++head) {
            const float* from = cache->data() + CacheIndex(block, head, 0);
            values.insert(values.end(), from, from + run);
          }
        }
      }
    }
    std::vector<uint8_t> bytes(values.size() * sizeof(float));
    if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
  }

  absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                        const std::vector<uint8_t>& bytes) override {
    if (absl::Status valid = CheckBlocks(blocks); !valid.ok()) return valid;
    absl::StatusOr<KvRange> r = KvRangeOf(range, config_);
    if (!r.ok()) return r.status();
    const int64_t expected = KvBytes(config_, kv_dtype(), blocks.size(), *r);
    if (static_cast<int64_t>(bytes.size()) != expected) {
      return absl::InvalidArgumentError(absl::StrCat("ImportKv: ", bytes.size(), " bytes for ",
                                                     blocks.size(), " blocks of this range; ",
                                                     expected, " expected"));
    }
    const size_t run = static_cast<size_t>(kKvBlockTokens) * config_.head_dim();
    const uint8_t* from = bytes.data();
    for (int l = r->layer_begin; l < r->layer_end; ++l) {
      for (std::vector<float>* cache : {&layers_[l].k_cache, &layers_[l].v_cache}) {
        for (int32_t block : blocks) {
          for (int head = r->head_begin; head < r->head_end; ++head) {
            std::memcpy(cache->data() + CacheIndex(block, head, 0), from, run * sizeof(float));
            from += run * sizeof(float);
          }
        }
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
    const bool opt = config_.family == ModelFamily::kOpt;
    const int64_t h = config_.hidden_size;
    const int heads = config_.num_heads;
    const int kv_heads = config_.num_kv_heads;
    const int group = heads / kv_heads;
    const int d = config_.head_dim();
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));

    std::vector<int32_t> ids, positions, slots;
    std::vector<int64_t> last_rows;
    for (const SequenceStep& step : batch) {
      for (size_t i = 0; i < step.tokens.size(); ++i) {
        const int position = step.cached_tokens + static_cast<int>(i);
        ids.push_back(step.tokens[i]);
        positions.push_back(position);
        slots.push_back(step.block_table[position / kKvBlockTokens] * kKvBlockTokens +
                        position % kKvBlockTokens);
      }
      last_rows.push_back(static_cast<int64_t>(ids.size()) - 1);
    }
    const int64_t tokens = static_cast<int64_t>(ids.size());
    std::vector<float> x(tokens * h);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t c = 0; c < h; ++c) {
        float value = (*embed_)[ids[t] * h + c];
        if (opt) value += (*positions_)[(positions[t] + 2) * h + c];  // OPT's offset of 2
        x[t * h + c] = value;
      }
    }
    for (Layer& layer : layers_) {
      std::vector<float> hidden = Norm(x, tokens, *layer.norm1_w, layer.norm1_b);
      std::vector<float> q = Linear(hidden, tokens, h, *layer.wq, layer.bq);
      std::vector<float> k = Linear(hidden, tokens, h, *layer.wk, layer.bk);
      std::vector<float> v = Linear(hidden, tokens, h, *layer.wv, layer.bv);
      if (!opt) {
        Rotate(q, positions, heads);
        Rotate(k, positions, kv_heads);
      }
      for (int64_t t = 0; t < tokens; ++t) {
        const int block = slots[t] / kKvBlockTokens;
        const int slot = slots[t] % kKvBlockTokens;
        for (int head = 0; head < kv_heads; ++head) {
          const size_t at = CacheIndex(block, head, slot);
          std::memcpy(&layer.k_cache[at], &k[(t * kv_heads + head) * d], d * sizeof(float));
          std::memcpy(&layer.v_cache[at], &v[(t * kv_heads + head) * d], d * sizeof(float));
        }
      }
      std::vector<float> attended(tokens * heads * d);
      int64_t row = 0;
      for (const SequenceStep& step : batch) {
        for (size_t i = 0; i < step.tokens.size(); ++i, ++row) {
          const int visible = step.cached_tokens + static_cast<int>(i) + 1;  // causal
          for (int head = 0; head < heads; ++head) {
            const int kv_head = head / group;  // repeat_interleave of the kv heads
            const float* query = &q[(row * heads + head) * d];
            std::vector<double> scores(visible);
            double max_score = -INFINITY;
            for (int p = 0; p < visible; ++p) {
              const float* key = &layer.k_cache[KeyIndex(step, p, kv_head)];
              double dot = 0;
              for (int e = 0; e < d; ++e) dot += static_cast<double>(query[e]) * key[e];
              scores[p] = dot * scale;
              max_score = std::max(max_score, scores[p]);
            }
            double total = 0;
            for (double& score : scores) total += (score = std::exp(score - max_score));
            float* out = &attended[(row * heads + head) * d];
            for (int e = 0; e < d; ++e) {
              double sum = 0;
              for (int p = 0; p < visible; ++p) {
                sum += scores[p] * layer.v_cache[KeyIndex(step, p, kv_head) + e];
              }
              out[e] = static_cast<float>(sum / total);
            }
          }
        }
      }
      const std::vector<float> projected = Linear(attended, tokens, heads * d, *layer.wo, layer.bo);
      for (size_t i = 0; i < x.size(); ++i) x[i] += projected[i];
      hidden = Norm(x, tokens, *layer.norm2_w, layer.norm2_b);
      std::vector<float> mlp;
      if (opt) {
        std::vector<float> inner = Linear(hidden, tokens, h, *layer.w1, layer.b1);
        for (float& value : inner) value = std::max(value, 0.0f);
        mlp = Linear(inner, tokens, config_.ffn_size, *layer.w2, layer.b2);
      } else {
        std::vector<float> gate = Linear(hidden, tokens, h, *layer.gate, nullptr);
        const std::vector<float> up = Linear(hidden, tokens, h, *layer.up, nullptr);
        for (size_t i = 0; i < gate.size(); ++i) {
          const double g = gate[i];
          gate[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
        }
        mlp = Linear(gate, tokens, config_.ffn_size, *layer.down, nullptr);
      }
      for (size_t i = 0; i < x.size(); ++i) x[i] += mlp[i];
    }
    std::vector<float> last(last_rows.size() * h);
    for (size_t s = 0; s < last_rows.size(); ++s) {
      std::memcpy(&last[s * h], &x[last_rows[s] * h], h * sizeof(float));
    }
    const std::vector<float> normed =
        Norm(last, static_cast<int64_t>(last_rows.size()), *final_w_, final_b_);
    const std::vector<float> logits =
        Linear(normed, static_cast<int64_t>(last_rows.size()), h, *head_, nullptr);
    return LogitRows(logits.data(), static_cast<int64_t>(batch.size()), config_.vocab_size);
  }

 private:
  size_t CacheIndex(int block, int head, int slot) const {
    return ((static_cast<size_t>(block) * config_.num_kv_heads + head) * kKvBlockTokens + slot) *
           config_.head_dim();
  }

  // KeyIndex is where position p of `step`'s sequence keeps head kv_head in a cache array.
  size_t KeyIndex(const SequenceStep& step, int p, int kv_head) const {
    return CacheIndex(step.block_table[p / kKvBlockTokens], kv_head, p % kKvBlockTokens);
  }

  // LayerNorm (OPT, with bias) or RMSNorm (LLaMA) over each row of x[rows, hidden].
  std::vector<float> Norm(const std::vector<float>& x, int64_t rows,
                          const std::vector<float>& weight, const std::vector<float>* bias) const {
    const int64_t h = config_.hidden_size;
    std::vector<float> out(rows * h);
    for (int64_t r = 0; r < rows; ++r) {
      const float* in = &x[r * h];
      double mean = 0, square = 0;
      for (int64_t c = 0; c < h; ++c) {
        mean += in[c];
        square += static_cast<double>(in[c]) * in[c];
      }
      mean /= h;
      square /= h;
      if (config_.family == ModelFamily::kOpt) {
        const double inv = 1.0 / std::sqrt(square - mean * mean + config_.norm_epsilon);
        for (int64_t c = 0; c < h; ++c) {
          out[r * h + c] = static_cast<float>((in[c] - mean) * inv * weight[c] + (*bias)[c]);
        }
      } else {
        const double inv = 1.0 / std::sqrt(square + config_.norm_epsilon);
        for (int64_t c = 0; c < h; ++c) {
          out[r * h + c] = static_cast<float>(in[c] * inv * weight[c]);
        }
      }
    }
    return out;
  }

  // Rotate applies rotary embeddings in place to x[tokens, heads, d], in Hugging Face LLaMA's
  // rotate_half layout: element i pairs with i + d/2, both turning by position * inv_freq[i].
  void Rotate(std::vector<float>& x, const std::vector<int32_t>& positions, int heads) const {
    const int d = config_.head_dim();
    const int half = d / 2;
    for (size_t t = 0; t < positions.size(); ++t) {
      for (int head = 0; head < heads; ++head) {
        float* v = &x[(t * heads + head) * d];
        for (int i = 0; i < half; ++i) {
          const float angle = static_cast<float>(positions[t]) * inv_freq_[i];  // fp32 as torch
          const double c = std::cos(angle), s = std::sin(angle);
          const double a = v[i], b = v[i + half];
          v[i] = static_cast<float>(a * c - b * s);
          v[i + half] = static_cast<float>(b * c + a * s);
        }
      }
    }
  }

  absl::Status CheckBlocks(const std::vector<int32_t>& blocks) const {
    for (int32_t block : blocks) {
      if (block < 0 || block >= num_kv_blocks_) {
        return absl::InvalidArgumentError(absl::StrCat(
            "KV block ", block, " is outside the cache's ", num_kv_blocks_, " blocks"));
      }
    }
    return absl::OkStatus();
  }

  ModelConfig config_;
  int num_kv_blocks_;
  std::map<std::string, std::vector<float>> tensors_;
  const std::vector<float>*embed_ = nullptr, *positions_ = nullptr, *final_w_ = nullptr,
        *final_b_ = nullptr, *head_ = nullptr;
  std::vector<float> inv_freq_;
  std::vector<Layer> layers_;
};

class RoundedSource : public model::WeightSource {
 public:
  RoundedSource(const model::WeightSource& source, gpu::DType dtype)
      : source_(source), dtype_(dtype) {}

  absl::StatusOr<std::vector<uint8_t>> Load(const model::TensorSpec& spec, gpu::DType dtype,
                                            int rank, int world) const override {
    absl::StatusOr<std::vector<uint8_t>> rounded = source_.Load(spec, dtype_, rank, world);
    if (!rounded.ok() || dtype == dtype_) return rounded;
    const size_t from = gpu::SizeOf(dtype_);
    const size_t to = gpu::SizeOf(dtype);
    const size_t count = rounded->size() / from;
    std::vector<uint8_t> out(count * to);
    for (size_t i = 0; i < count; ++i) {
      gpu::FromFloat(dtype, gpu::ToFloat(dtype_, rounded->data() + i * from), out.data() + i * to);
    }
    return out;
  }

  std::string Describe() const override {
    return absl::StrCat(source_.Describe(), ", rounded to ", gpu::DTypeName(dtype_));
  }

 private:
  const model::WeightSource& source_;
  gpu::DType dtype_;
};

}  // namespace

std::vector<ModelConfig> CudaTestModels() {
  const auto reshaped = [](const char* preset, const char* name, int hidden, int heads,
                           int kv_heads, int ffn) {
    ModelConfig config = *model::ModelPreset(preset);
    config.name = name;
    config.hidden_size = hidden;
    config.num_heads = heads;
    config.num_kv_heads = kv_heads;
    config.ffn_size = ffn;
    return config;
  };
  return {
      reshaped("tiny", "tiny-d64", 128, 2, 2, 512),
      reshaped("tiny", "tiny-d128", 256, 2, 2, 1024),
      reshaped("tiny-llama", "tiny-llama-d64", 256, 4, 2, 688),
      reshaped("tiny-llama", "tiny-llama-g4", 512, 8, 2, 1376),
  };
}

std::vector<ScriptStep> TestScript(int vocab_size) {
  uint64_t state = 0x5eed;
  const auto random_tokens = [&](int n) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < n; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      tokens.push_back(static_cast<int32_t>((state >> 33) % vocab_size));
    }
    return tokens;
  };
  // Each sequence's blocks (disjoint, out of order) and how many tokens its cache holds.
  struct Sequence {
    std::vector<int32_t> blocks;
    int cached = 0;
  };
  std::map<int, Sequence> seqs;
  seqs[1].blocks = {7, 2, 30};
  seqs[2].blocks = {11, 13};
  seqs[3].blocks = {12};
  for (int b = 59; b >= 40; --b) seqs[4].blocks.push_back(b);
  seqs[5].blocks = {20, 21, 22};
  seqs[6].blocks = {25, 26, 27, 28, 29};
  const auto step = [&](int seq, int n) {
    Sequence& s = seqs.at(seq);
    SequenceStep out{seq, random_tokens(n), s.cached, s.blocks};
    s.cached += n;
    return out;
  };
  std::vector<ScriptStep> script;
  script.push_back(
      {"prefill of 37, 5, 1 and 301 tokens", {step(1, 37), step(2, 5), step(3, 1), step(4, 301)}});
  script.push_back({"decode", {step(1, 1), step(2, 1), step(3, 1), step(4, 1)}});
  script.push_back({"decode", {step(4, 1), step(3, 1), step(2, 1), step(1, 1)}});
  script.push_back({"mixed: decode, new prompt of 23, chunk of 12 after 7 cached, decode",
                    {step(1, 1), step(5, 23), step(2, 12), step(4, 1)}});
  script.push_back({"chunked prefill: first chunk of 16", {step(6, 16)}});
  script.push_back(
      {"chunked prefill: 21 after 16 cached, with a decode", {step(3, 1), step(6, 21)}});
  script.push_back({"chunked prefill: 30 after 37 cached, 10 after 23, a decode",
                    {step(6, 30), step(5, 10), step(4, 1)}});
  script.push_back({"decode of all six",
                    {step(1, 1), step(2, 1), step(3, 1), step(4, 1), step(5, 1), step(6, 1)}});
  return script;
}

double RelativeError(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff) / std::sqrt(norm);
}

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateReferenceBackend(
    const ModelConfig& config, const model::WeightSource& weights, int num_kv_blocks) {
  if (absl::Status valid = model::Validate(config); !valid.ok()) return valid;
  if (num_kv_blocks <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_kv_blocks is ", num_kv_blocks, "; it must be positive"));
  }
  auto backend = std::make_unique<ReferenceBackend>(config, num_kv_blocks);
  if (absl::Status loaded = backend->Load(weights); !loaded.ok()) return loaded;
  return std::unique_ptr<ForwardBackend>(std::move(backend));
}

std::unique_ptr<model::WeightSource> RoundedWeights(const model::WeightSource& source,
                                                    gpu::DType dtype) {
  return std::make_unique<RoundedSource>(source, dtype);
}

}  // namespace troupe::serving::engine
