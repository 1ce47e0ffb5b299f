#include "serving/engine/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serving/model/safetensors.h"

namespace troupe::serving::engine {
namespace {

using model::ModelConfig;
using model::ModelFamily;
using ::testing::HasSubstr;

// --- A naive reference: the transformer in plain loops, in double, no cache ----------------------

class Reference {
 public:
  Reference(const ModelConfig& config, const model::WeightSource& weights) : c_(config) {
    for (const model::TensorSpec& spec : model::ExpectedTensors(config)) {
      const std::vector<uint8_t> bytes = *weights.Load(spec, gpu::DType::kFloat32, 0, 1);
      std::vector<double>& w = w_[spec.name];
      w.resize(bytes.size() / 4);
      for (size_t i = 0; i < w.size(); ++i)
        w[i] = gpu::ToFloat(gpu::DType::kFloat32, &bytes[4 * i]);
    }
  }

  // Logits of the last token of `tokens`.
  std::vector<double> LastLogits(const std::vector<int32_t>& tokens) const {
    const bool opt = c_.family == ModelFamily::kOpt;
    const std::string root = opt ? "model.decoder." : "model.";
    const int h = c_.hidden_size, d = c_.head_dim(), heads = c_.num_heads;
    const int group = heads / c_.num_kv_heads;
    const int n = static_cast<int>(tokens.size());
    std::vector<std::vector<double>> x(n, std::vector<double>(h));
    for (int t = 0; t < n; ++t) {
      for (int i = 0; i < h; ++i) {
        x[t][i] = W(root + "embed_tokens.weight")[tokens[t] * h + i];
        if (opt) x[t][i] += W("model.decoder.embed_positions.weight")[(t + 2) * h + i];
      }
    }
    for (int l = 0; l < c_.num_layers; ++l) {
      const std::string p = absl::StrCat(root, "layers.", l, ".");
      std::vector<std::vector<double>> q(n), k(n), v(n);
      for (int t = 0; t < n; ++t) {
        const std::vector<double> a =
            Norm(x[t], p + (opt ? "self_attn_layer_norm" : "input_layernorm"));
        q[t] = Linear(a, p + "self_attn.q_proj");
        k[t] = Linear(a, p + "self_attn.k_proj");
        v[t] = Linear(a, p + "self_attn.v_proj");
        if (!opt) {
          Rotate(q[t], t);
          Rotate(k[t], t);
        }
      }
      for (int t = 0; t < n; ++t) {
        std::vector<double> attended(h, 0.0);
        for (int head = 0; head < heads; ++head) {
          const int kv = head / group;
          std::vector<double> scores(t + 1);
          double max = -1e300;
          for (int j = 0; j <= t; ++j) {
            double dot = 0;
            for (int i = 0; i < d; ++i) dot += q[t][head * d + i] * k[j][kv * d + i];
            scores[j] = dot / std::sqrt(static_cast<double>(d));
            max = std::max(max, scores[j]);
          }
          double total = 0;
          for (double& s : scores) total += (s = std::exp(s - max));
          for (int j = 0; j <= t; ++j) {
            for (int i = 0; i < d; ++i) {
              attended[head * d + i] += scores[j] / total * v[j][kv * d + i];
            }
          }
        }
        const std::vector<double> out =
            Linear(attended, p + (opt ? "self_attn.out_proj" : "self_attn.o_proj"));
        for (int i = 0; i < h; ++i) x[t][i] += out[i];
        const std::vector<double> a =
            Norm(x[t], p + (opt ? "final_layer_norm" : "post_attention_layernorm"));
        std::vector<double> mlp;
        if (opt) {
          std::vector<double> inner = Linear(a, p + "fc1");
          for (double& value : inner) value = std::max(value, 0.0);
          mlp = Linear(inner, p + "fc2");
        } else {
          std::vector<double> gate = Linear(a, p + "mlp.gate_proj");
          const std::vector<double> up = Linear(a, p + "mlp.up_proj");
          for (size_t i = 0; i < gate.size(); ++i)
            gate[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
          mlp = Linear(gate, p + "mlp.down_proj");
        }
        for (int i = 0; i < h; ++i) x[t][i] += mlp[i];
      }
    }
    const std::vector<double> last =
        Norm(x[n - 1], opt ? "model.decoder.final_layer_norm" : "model.norm");
    const std::vector<double>& head =
        W(opt ? "model.decoder.embed_tokens.weight" : "lm_head.weight");
    std::vector<double> logits(c_.vocab_size, 0.0);
    for (int v = 0; v < c_.vocab_size; ++v) {
      for (int i = 0; i < h; ++i) logits[v] += head[v * h + i] * last[i];
    }
    return logits;
  }

 private:
  const std::vector<double>& W(const std::string& name) const { return w_.at(name); }

  std::vector<double> Linear(const std::vector<double>& in, const std::string& prefix) const {
    const std::vector<double>& w = W(prefix + ".weight");
    const size_t out_size = w.size() / in.size();
    std::vector<double> out(out_size, 0.0);
    for (size_t o = 0; o < out_size; ++o) {
      for (size_t i = 0; i < in.size(); ++i) out[o] += w[o * in.size() + i] * in[i];
      if (w_.count(prefix + ".bias")) out[o] += W(prefix + ".bias")[o];
    }
    return out;
  }

  std::vector<double> Norm(const std::vector<double>& in, const std::string& prefix) const {
    const size_t h = in.size();
    std::vector<double> out(h);
    const std::vector<double>& weight = W(prefix + ".weight");
    if (c_.family == ModelFamily::kOpt) {
      const double mean = std::accumulate(in.begin(), in.end(), 0.0) / h;
      double var = 0;
      for (double value : in) var += (value - mean) * (value - mean);
      var /= h;
      for (size_t i = 0; i < h; ++i) {
        out[i] =
            (in[i] - mean) / std::sqrt(var + c_.norm_epsilon) * weight[i] + W(prefix + ".bias")[i];
      }
    } else {
      double squares = 0;
      for (double value : in) squares += value * value;
      const double scale = 1.0 / std::sqrt(squares / h + c_.norm_epsilon);
      for (size_t i = 0; i < h; ++i) out[i] = in[i] * scale * weight[i];
    }
    return out;
  }

  // Rotary embedding at `position`, rotate_half layout (dims i and i + d/2 form a pair).
  void Rotate(std::vector<double>& x, int position) const {
    const int d = c_.head_dim();
    for (size_t head = 0; head < x.size() / d; ++head) {
      double* v = x.data() + head * d;
      for (int i = 0; i < d / 2; ++i) {
        const double angle = position * std::pow(c_.rope_theta, -2.0 * i / d);
        const double a = v[i], b = v[i + d / 2];
        v[i] = a * std::cos(angle) - b * std::sin(angle);
        v[i + d / 2] = b * std::cos(angle) + a * std::sin(angle);
      }
    }
  }

  const ModelConfig& c_;
  std::map<std::string, std::vector<double>> w_;
};

// --- Tests -------------------------------------------------------------------------------------

std::vector<int32_t> Prompt(int n, int seed) {
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = (seed * 7919 + i * 104729) % 50257;
  return tokens;
}

double MaxDifference(const std::vector<float>& a, const std::vector<float>& b) {
  double max = 0;
  for (size_t i = 0; i < a.size(); ++i) max = std::max(max, std::abs(double(a[i]) - b[i]));
  return max;
}

class CpuBackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    config_ = *model::ModelPreset(GetParam());
    weights_ = model::RandomWeights(/*seed=*/3);
  }
  std::unique_ptr<ForwardBackend> Backend(int tensor_parallel = 1) const {
    CpuBackendOptions options{/*num_kv_blocks=*/32};
    options.tensor_parallel = tensor_parallel;
    absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
        CreateCpuBackend(config_, *weights_, options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return *std::move(backend);
  }

  ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
};

TEST_P(CpuBackendTest, PrefillMatchesTheNaiveReference) {
  const std::vector<int32_t> prompt = Prompt(21, 1);
  const std::vector<float> logits = (*Backend()->Forward({{1, prompt, 0, {4, 9}}}))[0];
  const std::vector<double> reference = Reference(config_, *weights_).LastLogits(prompt);
  ASSERT_EQ(logits.size(), reference.size());
  double max = 0, scale = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    max = std::max(max, std::abs(logits[i] - reference[i]));
    scale = std::max(scale, std::abs(reference[i]));
  }
  EXPECT_LT(max, 1e-4 * std::max(1.0, scale)) << "largest logit " << scale;
}

// Decoding one token at a time from the cache, or prefilling in chunks (Sarathi-style), gives the
// logits of prefilling everything at once.
TEST_P(CpuBackendTest, IncrementalStepsMatchOnePrefill) {
  const std::vector<int32_t> prompt = Prompt(37, 2);
  const std::vector<int32_t> table = {5, 0, 17};  // scattered physical blocks
  const std::vector<float> whole = (*Backend()->Forward({{1, prompt, 0, table}}))[0];

  std::unique_ptr<ForwardBackend> decode = Backend();
  std::vector<float> last = (*decode->Forward(
      {{1, std::vector<int32_t>(prompt.begin(), prompt.begin() + 20), 0, table}}))[0];
  for (int i = 20; i < 37; ++i) last = (*decode->Forward({{1, {prompt[i]}, i, table}}))[0];
  EXPECT_LT(MaxDifference(whole, last), 1e-4);

  std::unique_ptr<ForwardBackend> chunked = Backend();
  for (int begin = 0; begin < 37; begin += 16) {
    const int end = std::min(begin + 16, 37);
    last =
        (*chunked->Forward({{1, std::vector<int32_t>(prompt.begin() + begin, prompt.begin() + end),
                             begin, table}}))[0];
  }
  EXPECT_LT(MaxDifference(whole, last), 1e-4);
}

// A batch of sequences (mixed prefill and decode) computes what each sequence computes alone.
TEST_P(CpuBackendTest, BatchedSequencesAreIndependent) {
  const std::vector<int32_t> a = Prompt(18, 3), b = Prompt(5, 4);
  std::unique_ptr<ForwardBackend> alone = Backend();
  const std::vector<float> a_alone = (*alone->Forward({{1, a, 0, {1, 2}}}))[0];
  const std::vector<float> b_alone = (*alone->Forward({{2, b, 0, {3}}}))[0];
  const std::vector<float> b_next = (*alone->Forward({{2, {42}, 5, {3}}}))[0];

  std::unique_ptr<ForwardBackend> together = Backend();
  ASSERT_TRUE(together->Forward({{2, b, 0, {3}}}).ok());
  const std::vector<std::vector<float>> both =
      *together->Forward({{1, a, 0, {1, 2}}, {2, {42}, 5, {3}}});
  EXPECT_LT(MaxDifference(both[0], a_alone), 1e-4);
  EXPECT_LT(MaxDifference(both[1], b_next), 1e-4);
  EXPECT_GT(MaxDifference(b_alone, b_next), 1e-3);  // the new token changed the logits
}

TEST_P(CpuBackendTest, BadStepsAreRefusedAndChangeNothing) {
  std::unique_ptr<ForwardBackend> backend = Backend();
  const std::vector<int32_t> prompt = Prompt(20, 5);
  ASSERT_TRUE(backend->Forward({{1, prompt, 0, {0, 1}}}).ok());
  auto message = [&](SequenceStep step) {
    return std::string(backend->Forward({{1, {7}, 20, {0, 1}}, step}).status().message());
  };
  EXPECT_THAT(message({9, {}, 0, {2}}), HasSubstr("sequence 9: a step needs at least one"));
  EXPECT_THAT(message({9, {config_.vocab_size}, 0, {2}}), HasSubstr("outside the vocabulary"));
  EXPECT_THAT(message({9, {1}, -1, {2}}), HasSubstr("cached_tokens is -1"));
  EXPECT_THAT(message({9, Prompt(17, 6), 0, {2}}),
              HasSubstr("block table has 1 blocks but 17 tokens need 2"));
  EXPECT_THAT(message({9, {1}, 0, {32}}), HasSubstr("block 32 is outside the cache's 32 blocks"));
  EXPECT_THAT(message({9, {1}, config_.max_position_embeddings, {2}}),
              HasSubstr("exceed the model's context"));
  // The valid step of each refused batch did not run: decoding token 7 now matches a backend
  // that never saw the refused batches.
  std::unique_ptr<ForwardBackend> fresh = Backend();
  ASSERT_TRUE(fresh->Forward({{1, prompt, 0, {0, 1}}}).ok());
  const std::vector<float> after = (*backend->Forward({{1, {7}, 20, {0, 1}}}))[0];
  const std::vector<float> expected = (*fresh->Forward({{1, {7}, 20, {0, 1}}}))[0];
  EXPECT_LT(MaxDifference(after, expected), 1e-6);
}

int32_t Argmax(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Greedy decoding of `steps` tokens after `first`, on `backend` whose cache holds the prompt.
std::vector<int32_t> Decode(ForwardBackend& backend, const std::vector<int32_t>& table,
                            int prompt_len, int32_t first, int steps) {
  std::vector<int32_t> out = {first};
  for (int i = 0; i < steps; ++i) {
    out.push_back(Argmax((*backend.Forward({{1, {out.back()}, prompt_len + i, table}}))[0]));
  }
  return out;
}

// DistServe's path on CPU: prefill on one backend, move the KV as bytes (whole, or in the
// pieces of a different tensor/pipeline split), decode on another with other block ids.
TEST_P(CpuBackendTest, KvMovedBetweenBackendsDecodesLikeColocated) {
  const std::vector<int32_t> prompt = Prompt(37, 9);
  const std::vector<int32_t> prefill_table = {3, 8, 1};
  const std::vector<int32_t> decode_table = {0, 5, 2, 6};  // room for the generated tokens
  std::unique_ptr<ForwardBackend> colocated = Backend();
  const int32_t first = Argmax((*colocated->Forward({{1, prompt, 0, decode_table}}))[0]);
  const std::vector<int32_t> expected = Decode(*colocated, decode_table, 37, first, 8);

  std::unique_ptr<ForwardBackend> prefill = Backend();
  ASSERT_EQ(Argmax((*prefill->Forward({{1, prompt, 0, prefill_table}}))[0]), first);
  const std::vector<int32_t> dst(decode_table.begin(), decode_table.begin() + 3);

  std::unique_ptr<ForwardBackend> whole = Backend();
  absl::StatusOr<std::vector<uint8_t>> bytes = prefill->ExportKv(prefill_table, {});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(static_cast<int64_t>(bytes->size()),
            KvBytes(config_, gpu::DType::kFloat32, 3, *KvRangeOf({}, config_)));
  ASSERT_TRUE(whole->ImportKv(dst, {}, *bytes).ok());
  EXPECT_EQ(Decode(*whole, decode_table, 37, first, 8), expected);

  // The same KV in four pieces: two layer ranges x two kv-head ranges.
  std::unique_ptr<ForwardBackend> pieces = Backend();
  const int layers = config_.num_layers, heads = config_.num_kv_heads;
  for (KvRange range :
       {KvRange{0, layers / 2, 0, heads / 2}, KvRange{0, layers / 2, heads / 2, -1},
        KvRange{layers / 2, -1, 0, heads / 2}, KvRange{layers / 2, -1, heads / 2, -1}}) {
    absl::StatusOr<std::vector<uint8_t>> part = prefill->ExportKv(prefill_table, range);
    ASSERT_TRUE(part.ok()) << part.status();
    ASSERT_TRUE(pieces->ImportKv(dst, range, *part).ok());
  }
  EXPECT_EQ(Decode(*pieces, decode_table, 37, first, 8), expected);
}

double RelativeError(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

// Tensor parallelism (Megatron's splits, the all-reduce as a sum) computes the model: the ranks'
// partial sums round differently, so to float precision, with the same greedy tokens.
TEST_P(CpuBackendTest, TensorParallelRanksComputeTheModel) {
  std::unique_ptr<ForwardBackend> whole = Backend();
  std::unique_ptr<ForwardBackend> split = Backend(/*tensor_parallel=*/2);
  const std::vector<std::vector<SequenceStep>> steps = {
      {{1, Prompt(21, 1), 0, {0, 1}}, {2, Prompt(6, 2), 0, {4, 5}}},
      {{1, {17}, 21, {0, 1}}, {2, {18}, 6, {4, 5}}},
      {{2, Prompt(11, 3), 7, {4, 5}}},
  };
  for (const std::vector<SequenceStep>& step : steps) {
    const std::vector<std::vector<float>> a = *whole->Forward(step);
    const std::vector<std::vector<float>> b = *split->Forward(step);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_LT(RelativeError(b[i], a[i]), 1e-5) << "sequence " << step[i].seq_id;
      EXPECT_EQ(Argmax(b[i]), Argmax(a[i])) << "sequence " << step[i].seq_id;
    }
  }
}

// KV moves between instances of different tensor-parallel degrees: the two-rank prefill side
// gives each head range from the rank that holds it (here: per rank, as a decode rank of
// another split would ask, and across the ranks' boundary), the one-rank decode side takes it,
// and decoding continues as on a backend that did everything itself.
TEST_P(CpuBackendTest, KvMovesBetweenTensorParallelDegrees) {
  const std::vector<int32_t> prompt = Prompt(29, 5);
  std::unique_ptr<ForwardBackend> prefill = Backend(/*tensor_parallel=*/2);
  std::unique_ptr<ForwardBackend> decode = Backend();
  std::unique_ptr<ForwardBackend> alone = Backend();
  ASSERT_TRUE(prefill->Forward({{1, prompt, 0, {2, 3}}}).ok());
  const int32_t first = Argmax((*alone->Forward({{1, prompt, 0, {2, 3}}}))[0]);
  const int kv = config_.num_kv_heads;
  for (const std::vector<KvRange>& pieces : std::vector<std::vector<KvRange>>{
           {{0, -1, 0, kv / 2}, {0, -1, kv / 2, kv}},  // rank by rank
           {{0, -1, 0, kv}},                            // all at once
           {{0, 1, 0, kv}, {1, -1, 0, 1}, {1, -1, 1, kv}}}) {
    for (const KvRange& piece : pieces) {
      absl::StatusOr<std::vector<uint8_t>> bytes = prefill->ExportKv({2, 3}, piece);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      ASSERT_TRUE(decode->ImportKv({6, 7}, piece, *bytes).ok());
    }
    const std::vector<uint8_t> got = *decode->ExportKv({6, 7}, {});
    const std::vector<uint8_t> want = *alone->ExportKv({2, 3}, {});
    // Bytes to floats for the comparison.
    std::vector<float> a(got.size() / 4), b(want.size() / 4);
    std::memcpy(a.data(), got.data(), got.size());
    std::memcpy(b.data(), want.data(), want.size());
    EXPECT_LT(RelativeError(a, b), 1e-5);
  }
  EXPECT_EQ(Decode(*decode, {6, 7, 8}, 29, first, 6), Decode(*alone, {2, 3, 4}, 29, first, 6));
}

TEST_P(CpuBackendTest, BadKvTransfersAreRefusedAndWriteNothing) {
  std::unique_ptr<ForwardBackend> backend = Backend();
  ASSERT_TRUE(backend->Forward({{1, Prompt(20, 4), 0, {0, 1}}}).ok());
  const std::vector<uint8_t> before = *backend->ExportKv({0, 1}, {});
  EXPECT_THAT(backend->ExportKv({0, 32}, {}).status().message(),
              HasSubstr("KV block 32 is outside the cache's 32 blocks"));
  EXPECT_THAT(backend->ExportKv({0}, KvRange{0, config_.num_layers + 1, 0, -1}).status().message(),
              HasSubstr("layers [0, 3) are not a non-empty part of 2"));
  EXPECT_THAT(backend->ExportKv({0}, KvRange{0, -1, 1, 1}).status().message(),
              HasSubstr("kv heads [1, 1)"));
  std::vector<uint8_t> short_bytes(before.size() - 4);
  EXPECT_THAT(backend->ImportKv({0, 1}, {}, short_bytes).message(), HasSubstr("expected"));
  EXPECT_THAT(backend->ImportKv({0, 99}, {}, before).message(), HasSubstr("KV block 99"));
  EXPECT_EQ(*backend->ExportKv({0, 1}, {}), before);
}

INSTANTIATE_TEST_SUITE_P(Models, CpuBackendTest, ::testing::Values("tiny", "tiny-llama"),
                         [](const auto& info) {
                           return info.param == "tiny" ? std::string("Opt") : std::string("Llama");
                         });

TEST(CreateCpuBackendTest, BadOptionsAndWeightsAreErrors) {
  const ModelConfig tiny = *model::ModelPreset("tiny");
  std::unique_ptr<model::WeightSource> weights = model::RandomWeights(1);
  EXPECT_THAT(CreateCpuBackend(tiny, *weights, CpuBackendOptions{0}).status().message(),
              HasSubstr("num_kv_blocks is 0"));
  CpuBackendOptions three_ranks;
  three_ranks.tensor_parallel = 3;
  EXPECT_THAT(CreateCpuBackend(tiny, *weights, three_ranks).status().message(),
              HasSubstr("tensor_parallel is 3; it must be at least 1 and divide tiny's 4 heads"));
  ModelConfig bad = tiny;
  bad.num_heads = 3;
  EXPECT_THAT(CreateCpuBackend(bad, *weights, CpuBackendOptions{}).status().message(),
              HasSubstr("not a multiple of num_heads"));
  // A checkpoint that lacks the model's tensors: the first missing one is named.
  const std::string path = std::string(::testing::TempDir()) + "/partial.safetensors";
  ASSERT_TRUE(model::WriteSafetensors(
                  path, {{"unrelated", model::TensorDType::kF32, {1}, std::vector<uint8_t>(4, 0)}})
                  .ok());
  EXPECT_THAT(
      CreateCpuBackend(tiny, **model::OpenCheckpoint(path), CpuBackendOptions{}).status().message(),
      HasSubstr("tensor model.decoder.embed_tokens.weight (shape [50272, 64]) is in none"));
}

}  // namespace
}  // namespace troupe::serving::engine
