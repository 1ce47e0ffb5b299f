// CudaBackend against the plain C++ reference of CpuBackend (cuda_backend_reference.h; LibTorch
// cannot go to the GPU hosts, and cuda_backend_reference_test checks the reference against
// CpuBackend on the CPU). The reference gets the same fp16/bf16-rounded weights as the GPU, so
// the differences are the GPU's fp16/bf16 activations and its summation orders.
//
// Needs a GPU; skipped without one. Every comparison prints its numbers.
#include "serving/engine/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gpu/device.h"
#include "gpu/dtype.h"
#include "gpu/sampling/host_sampling.h"
#include "gtest/gtest.h"
#include "serving/engine/continuous_batcher.h"
#include "serving/engine/cuda_backend_reference.h"
#include "serving/engine/cuda_test_util.h"
#include "serving/engine/host_kv_pool.h"
#include "serving/kv/block_manager.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine {
namespace {

using gpu::DType;

// ||cuda - reference|| / ||reference|| of logits and KV. fp16 keeps 11 significant bits, bf16 8;
// a few roundings per layer in 2 layers stay well inside this.
constexpr double kTolerance = 2e-2;
constexpr uint64_t kWeightSeed = 7;

// AsFloats reads KV bytes of `dtype` as floats; FromFloats writes them.
class CudaBackendTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (gpu::Device::Count() == 0) GTEST_SKIP() << "no CUDA device";
    const Case& c = GetParam();
    weights_ = model::RandomWeights(kWeightSeed);
    rounded_ = RoundedWeights(*weights_, c.dtype);
    reference_ = Reference();
    cuda_ = Cuda();
  }

  std::unique_ptr<ForwardBackend> Reference() {
    absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
        CreateReferenceBackend(GetParam().config, *rounded_, kTestScriptBlocks);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? *std::move(backend) : nullptr;
  }

  // Small step limits, so the script's larger steps (344 tokens, 6 sequences) grow the scratch.
  std::unique_ptr<ForwardBackend> Cuda(
      bool cuda_graphs = false,
      int skinny_gemm_max_rows = CudaBackendOptions{}.skinny_gemm_max_rows) {
    CudaBackendOptions options;
    options.cuda_graphs = cuda_graphs;
    options.skinny_gemm_max_rows = skinny_gemm_max_rows;
    options.dtype = GetParam().dtype;
    options.num_kv_blocks = kTestScriptBlocks;
    options.max_step_tokens = 64;
    options.max_step_sequences = 4;
    absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
        CreateCudaBackend(GetParam().config, *weights_, options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? *std::move(backend) : nullptr;
  }

  // RunScript runs TestScript on both backends and checks every sequence's logits.
  void RunScript() {
    const Case& c = GetParam();
    std::printf("%s %s: step | seq | new | cached | rel err | max |diff| | argmax ref/cuda\n",
                c.config.name.c_str(), gpu::DTypeName(c.dtype));
    for (const ScriptStep& step : TestScript(c.config.vocab_size)) {
      absl::StatusOr<std::vector<std::vector<float>>> expected = reference_->Forward(step.batch);
      absl::StatusOr<std::vector<std::vector<float>>> actual = cuda_->Forward(step.batch);
      ASSERT_TRUE(expected.ok()) << expected.status();
      ASSERT_TRUE(actual.ok()) << step.what << ": " << actual.status();
      ASSERT_EQ(actual->size(), step.batch.size());
      for (size_t s = 0; s < step.batch.size(); ++s) {
        const std::vector<float>& a = (*actual)[s];
        const std::vector<float>& b = (*expected)[s];
        ASSERT_EQ(a.size(), b.size());
        double max_diff = 0;
        for (size_t i = 0; i < a.size(); ++i) {
          max_diff = std::max(max_diff, std::abs(static_cast<double>(a[i]) - b[i]));
        }
        const double error = RelativeError(a, b);
        std::printf("  %-62s | %d | %3zu | %3d | %.2e | %.2e | %d/%d\n", step.what.c_str(),
                    static_cast<int>(step.batch[s].seq_id), step.batch[s].tokens.size(),
                    step.batch[s].cached_tokens, error, max_diff, Argmax(b), Argmax(a));
        EXPECT_LT(error, kTolerance)
            << c.config.name << " " << gpu::DTypeName(c.dtype) << ", step \"" << step.what
            << "\", sequence " << step.batch[s].seq_id << ": relative error " << error
            << ", max |diff| " << max_diff;
      }
    }
  }

  std::unique_ptr<model::WeightSource> weights_;
  std::unique_ptr<model::WeightSource> rounded_;
  std::unique_ptr<ForwardBackend> reference_;
  std::unique_ptr<ForwardBackend> cuda_;
};

// By default only one-row products run on the skinny GEMM; here every product of up to 8 rows
// does (the script's decode steps of 2 to 6 sequences included), and must match the reference
// as well.
TEST_P(CudaBackendTest, SkinnyGemmUpToEightRowsMatchesTheReference) {
  cuda_ = Cuda(/*cuda_graphs=*/false, /*skinny_gemm_max_rows=*/8);
  ASSERT_NE(cuda_, nullptr);
  RunScript();
}

TEST_P(CudaBackendTest, LogitsAndCacheMatchTheReference) {
  ASSERT_NE(cuda_, nullptr);
  EXPECT_EQ(cuda_->kv_dtype(), GetParam().dtype);
  EXPECT_EQ(cuda_->num_kv_blocks(), kTestScriptBlocks);
  RunScript();
  // Every block, as written by the steps: the CUDA cache in its dtype, the reference's in fp32.
  absl::StatusOr<std::vector<uint8_t>> cuda_kv = cuda_->ExportKv(AllBlocks(), {});
  absl::StatusOr<std::vector<uint8_t>> reference_kv = reference_->ExportKv(AllBlocks(), {});
  ASSERT_TRUE(cuda_kv.ok()) << cuda_kv.status();
  ASSERT_TRUE(reference_kv.ok()) << reference_kv.status();
  ASSERT_EQ(cuda_kv->size(), KvBytes(GetParam().config, GetParam().dtype, kTestScriptBlocks,
                                     *KvRangeOf({}, GetParam().config)));
  const double error =
      RelativeError(AsFloats(*cuda_kv, GetParam().dtype), AsFloats(*reference_kv, DType::kFloat32));
  std::printf("KV cache, all blocks: relative error %.2e\n", error);
  EXPECT_LT(error, kTolerance) << "the KV caches differ";
}

TEST_P(CudaBackendTest, KvMovesBetweenCudaAndReference) {
  ASSERT_NE(cuda_, nullptr);
  RunScript();
  const model::ModelConfig& config = GetParam().config;
  const DType dtype = GetParam().dtype;
  // Sequence 4's blocks (306 tokens written by the script), and a step that decodes on them.
  std::vector<int32_t> blocks;
  for (int b = 59; b >= 40; --b) blocks.push_back(b);
  const std::vector<SequenceStep> decode = {{4, {123}, 306, blocks}};

  // CUDA -> reference: export, convert to fp32, import into a fresh reference, decode on both.
  absl::StatusOr<std::vector<uint8_t>> exported = cuda_->ExportKv(blocks, {});
  ASSERT_TRUE(exported.ok()) << exported.status();
  std::unique_ptr<ForwardBackend> receiver = Reference();
  ASSERT_TRUE(receiver->ImportKv(blocks, {}, Convert(*exported, dtype, DType::kFloat32)).ok());
  absl::StatusOr<std::vector<std::vector<float>>> on_cuda = cuda_->Forward(decode);
  absl::StatusOr<std::vector<std::vector<float>>> on_receiver = receiver->Forward(decode);
  ASSERT_TRUE(on_cuda.ok() && on_receiver.ok());
  double error = RelativeError((*on_cuda)[0], (*on_receiver)[0]);
  std::printf("decode after CUDA -> reference KV transfer: relative error %.2e\n", error);
  EXPECT_LT(error, kTolerance);

  // Reference -> CUDA: the reference's fp32 KV, converted, into a fresh CUDA backend.
  absl::StatusOr<std::vector<uint8_t>> reference_kv = reference_->ExportKv(blocks, {});
  ASSERT_TRUE(reference_kv.ok());
  std::unique_ptr<ForwardBackend> cuda_receiver = Cuda();
  ASSERT_NE(cuda_receiver, nullptr);
  absl::Status imported =
      cuda_receiver->ImportKv(blocks, {}, Convert(*reference_kv, DType::kFloat32, dtype));
  ASSERT_TRUE(imported.ok()) << imported;
  absl::StatusOr<std::vector<std::vector<float>>> on_reference = reference_->Forward(decode);
  absl::StatusOr<std::vector<std::vector<float>>> on_cuda_receiver = cuda_receiver->Forward(decode);
  ASSERT_TRUE(on_reference.ok() && on_cuda_receiver.ok());
  error = RelativeError((*on_cuda_receiver)[0], (*on_reference)[0]);
  std::printf("decode after reference -> CUDA KV transfer: relative error %.2e\n", error);
  EXPECT_LT(error, kTolerance);

  // A range (last layer, last kv head) moves the same values as the reference's, in its layout.
  const KvRange range{config.num_layers - 1, -1, config.num_kv_heads - 1, -1};
  const std::vector<int32_t> some = {30, 2, 45};
  absl::StatusOr<std::vector<uint8_t>> cuda_part = cuda_->ExportKv(some, range);
  absl::StatusOr<std::vector<uint8_t>> reference_part = reference_->ExportKv(some, range);
  ASSERT_TRUE(cuda_part.ok() && reference_part.ok());
  ASSERT_EQ(cuda_part->size() / gpu::SizeOf(dtype), reference_part->size() / sizeof(float));
  error = RelativeError(AsFloats(*cuda_part, dtype), AsFloats(*reference_part, DType::kFloat32));
  std::printf("KV range export: relative error %.2e\n", error);
  EXPECT_LT(error, kTolerance);
  // ImportKv of a range writes exactly those bytes back.
  ASSERT_TRUE(cuda_receiver->ImportKv(some, range, *cuda_part).ok());
  absl::StatusOr<std::vector<uint8_t>> back = cuda_receiver->ExportKv(some, range);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *cuda_part);
}

// A swap pool of the CUDA backend is pinned, and swaps through it move exactly ExportKv's bytes.
TEST_P(CudaBackendTest, SwapsThroughAPinnedPoolKeepTheBytes) {
  ASSERT_NE(cuda_, nullptr);
  RunScript();
  absl::StatusOr<HostKvPool> pool = HostKvPool::Create(*cuda_, 8);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_TRUE(pool->pinned());
  const std::vector<int32_t> written = {59, 41, 40};  // blocks the script wrote
  absl::Status out = pool->SwapOut(*cuda_, written, {6, 0, 3});
  ASSERT_TRUE(out.ok()) << out;
  absl::StatusOr<std::vector<uint8_t>> exported = cuda_->ExportKv(written, {});
  ASSERT_TRUE(exported.ok());
  EXPECT_EQ(*pool->Load({6, 0, 3}), *exported);
  absl::Status in = pool->SwapIn(*cuda_, {6, 0, 3}, {5, 9, 7});
  ASSERT_TRUE(in.ok()) << in;
  EXPECT_EQ(*cuda_->ExportKv({5, 9, 7}, {}), *exported);
  // Bad inputs write nothing.
  const std::vector<uint8_t> before = *pool->Load({0, 1, 2, 3, 4, 5, 6, 7});
  EXPECT_FALSE(pool->SwapOut(*cuda_, {59, kTestScriptBlocks}, {1, 2}).ok());
  EXPECT_FALSE(pool->SwapOut(*cuda_, {59}, {1, 2}).ok());
  EXPECT_EQ(*pool->Load({0, 1, 2, 3, 4, 5, 6, 7}), before);
}

TEST_P(CudaBackendTest, BadInputsAreErrorsAndWriteNothing) {
  ASSERT_NE(cuda_, nullptr);
  const model::ModelConfig& config = GetParam().config;
  const std::vector<int32_t> prompt = {5, 6, 7, 8, 9};
  ASSERT_TRUE(cuda_->Forward({{1, prompt, 0, {3}}}).ok());
  absl::StatusOr<std::vector<uint8_t>> before = cuda_->ExportKv(AllBlocks(), {});
  ASSERT_TRUE(before.ok());

  const SequenceStep good{1, {10}, 5, {3}};
  const std::vector<std::pair<std::string, SequenceStep>> bad = {
      {"a block outside the cache", {2, {1, 2}, 0, {kTestScriptBlocks}}},
      {"a token outside the vocabulary", {2, {1, config.vocab_size}, 0, {4}}},
      {"a negative token", {2, {-1}, 0, {4}}},
      {"no tokens", {2, {}, 0, {4}}},
      {"a block table too short", {2, std::vector<int32_t>(17, 1), 0, {4}}},
      {"a position past the context", {2, {1}, config.max_position_embeddings, {4}}},
  };
  for (const auto& [what, step] : bad) {
    absl::StatusOr<std::vector<std::vector<float>>> result = cuda_->Forward({good, step});
    EXPECT_FALSE(result.ok()) << what;
    EXPECT_TRUE(absl::StrContains(result.status().message(), "sequence 2"))
        << what << ": " << result.status();
  }
  EXPECT_FALSE(cuda_->ExportKv({kTestScriptBlocks}, {}).ok());
  EXPECT_FALSE(cuda_->ExportKv({0}, KvRange{0, config.num_layers + 1, 0, -1}).ok());
  std::vector<uint8_t> garbage(before->size() / kTestScriptBlocks, 0xff);
  EXPECT_FALSE(cuda_->ImportKv({-1}, {}, garbage).ok());
  EXPECT_FALSE(cuda_->ImportKv({0}, {}, std::vector<uint8_t>(garbage.size() - 2, 0xff)).ok());
  EXPECT_FALSE(cuda_->ImportKv({0, 1}, {}, garbage).ok());

  absl::StatusOr<std::vector<uint8_t>> after = cuda_->ExportKv(AllBlocks(), {});
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(*after == *before) << "a refused call changed the KV cache";
  // And the backend still works: the good step alone.
  absl::StatusOr<std::vector<std::vector<float>>> good_result = cuda_->Forward({good});
  EXPECT_TRUE(good_result.ok()) << good_result.status();
}

// Greedy decoding of `prompt` alone on `backend` (blocks 0, 1, ...): the tokens and the smallest
// margin (see Margin) of any step. Stops early once a step's margin is below `stop_below`.
// Greedy tokens through the real ContinuousBatcher must equal the reference's, token for token.
// fp16/bf16 arithmetic can flip an argmax where the top two logits nearly tie, which is not a
// bug; so the prompts are chosen (deterministically, from a seeded list, on the reference alone,
// before the GPU runs) among those whose greedy run never comes within a margin (min_margin) of a
// tie, in units of the logits' rms. Rounding the weights to fp16 moves the logits by 5e-4 to 1e-3
// of their norm and to bf16 by 4e-3 to 8e-3 (measured on these models with the reference), so the
// margins, 0.02 (fp16) and 0.05 (bf16), are about 20x and 5x that. Random LLaMA-shaped models
// rarely keep such a margin for 16 tokens (about 1 prompt in 5 for fp16, 1 in 40 for bf16), hence
// the long candidate list. A mismatch on the chosen prompts is a real difference; the test prints
// both token lists and the margins.
TEST_P(CudaBackendTest, GreedyTokensThroughTheBatcherMatchTheReference) {
  ASSERT_NE(cuda_, nullptr);
  constexpr int kRequests = 4;
  constexpr int kNewTokens = 16;
  constexpr int kCandidates = 1000;
  const double min_margin = GetParam().dtype == DType::kFloat16 ? 0.02 : 0.05;
  const model::ModelConfig& config = GetParam().config;
  std::vector<GenerationRequest> requests;
  std::map<int64_t, GreedyRun> expected;
  uint64_t state = 0xabcdef;
  for (int candidate = 0; candidate < kCandidates && requests.size() < kRequests; ++candidate) {
    std::vector<int32_t> prompt;
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const int length = 3 + static_cast<int>((state >> 33) % 40);
    for (int i = 0; i < length; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      prompt.push_back(static_cast<int32_t>((state >> 33) % config.vocab_size));
    }
    GreedyRun run = GreedyAlone(*reference_, prompt, kNewTokens, min_margin);
    if (run.min_margin < min_margin) continue;
    const int64_t id = 100 + candidate;
    requests.push_back({id, prompt, kNewTokens, {}});
    expected[id] = run;
  }
  ASSERT_EQ(requests.size(), static_cast<size_t>(kRequests))
      << "fewer than " << kRequests << " of " << kCandidates
      << " seeded prompts keep a greedy margin of " << min_margin << " on the reference";

  BatcherOptions whole;
  BatcherOptions chunked;
  chunked.chunked_prefill = true;
  chunked.max_batch_tokens = 20;  // Prompts of up to 42 tokens go in 2-3 chunks beside decodes.
  for (const auto& [name, options] : std::vector<std::pair<std::string, BatcherOptions>>{
           {"whole prompts", whole}, {"chunked prefill", chunked}}) {
    std::unique_ptr<ForwardBackend> reference = Reference();
    std::unique_ptr<ForwardBackend> cuda = Cuda();
    ASSERT_TRUE(reference != nullptr && cuda != nullptr);
    std::map<int64_t, std::vector<int32_t>> on_reference = Generate(*reference, requests, options);
    std::map<int64_t, std::vector<int32_t>> on_cuda = Generate(*cuda, requests, options);
    for (const GenerationRequest& request : requests) {
      const std::vector<int32_t>& want = expected[request.id].tokens;
      std::printf("%s, request %d (prompt %zu, min margin %.3f): %s\n", name.c_str(),
                  static_cast<int>(request.id), request.prompt.size(),
                  expected[request.id].min_margin, absl::StrJoin(want, " ").c_str());
      // The reference batched as it decodes alone (fp32: batching does not change its argmax).
      EXPECT_EQ(on_reference[request.id], want) << name << ", request " << request.id;
      EXPECT_EQ(on_cuda[request.id], want)
          << name << ", request " << request.id << " (reference min margin "
          << expected[request.id].min_margin << ")\n  reference: " << absl::StrJoin(want, " ")
          << "\n  cuda:      " << absl::StrJoin(on_cuda[request.id], " ");
    }
  }
}

// ExpectSameLogits expects two backends' logits of one step to be equal bit for bit; on a mismatch
// it prints how many values differ and by how much, which tells rounding from a wrong input.
void ExpectSameLogits(const std::vector<std::vector<float>>& eager,
                      const std::vector<std::vector<float>>& graphs, const std::string& what) {
  ASSERT_EQ(eager.size(), graphs.size()) << what;
  for (size_t s = 0; s < eager.size(); ++s) {
    ASSERT_EQ(eager[s].size(), graphs[s].size()) << what;
    size_t differ = 0;
    double max_diff = 0;
    for (size_t i = 0; i < eager[s].size(); ++i) {
      if (std::memcmp(&eager[s][i], &graphs[s][i], sizeof(float)) != 0) {
        ++differ;
        max_diff = std::max(max_diff, std::abs(static_cast<double>(eager[s][i]) - graphs[s][i]));
      }
    }
    EXPECT_EQ(differ, 0u) << what << ", sequence " << s << ": " << differ << " of "
                          << eager[s].size() << " logits differ, max |diff| " << max_diff
                          << ", relative error " << RelativeError(graphs[s], eager[s]);
  }
}

// A backend with cuda_graphs replays pure-decode steps from captured graphs; one without runs
// every step eagerly. A replay launches the eager step's kernels on the same inputs, so the two
// must agree bit for bit: logits and cache. The decode steps cover batch sizes 1 to 4 (graphs)
// and 6 (past max_step_sequences: eager), contexts on both sides of 256 tokens (one decode-
// attention partition, then two with a merge: different graphs), one graph for max contexts of
// 247 and of 23 tokens (block tables padded to its bucket's 256 tokens), a mixed step between
// them, repeats of every key (replays with new tokens, positions, slots and contexts), graphs
// turned off for a step, and a prompt that grows the scratch memory mid-run (every graph
// dropped and captured again).
TEST_P(CudaBackendTest, CudaGraphDecodesMatchEagerBitForBit) {
  const model::ModelConfig& config = GetParam().config;
  std::unique_ptr<ForwardBackend> eager = Cuda(/*cuda_graphs=*/false);
  std::unique_ptr<ForwardBackend> graphs = Cuda(/*cuda_graphs=*/true);
  ASSERT_TRUE(eager != nullptr && graphs != nullptr);

  // Sequences: the prompt, then how many tokens the cache holds, and their blocks (disjoint).
  struct Sequence {
    int64_t id;
    int prompt;
    std::vector<int32_t> blocks;
    int cached = 0;
  };
  std::map<char, Sequence> seqs;
  int next_block = 0;
  const auto add = [&](char name, int64_t id, int prompt, int blocks) {
    Sequence seq{id, prompt, {}};
    for (int b = 0; b < blocks; ++b) seq.blocks.push_back(next_block++);
    seqs[name] = seq;
  };
  add('A', 1, 244, 17);
  add('B', 2, 250, 17);
  add('C', 3, 20, 3);
  add('D', 4, 17, 3);
  add('E', 5, 5, 3);
  add('F', 6, 9, 3);
  add('G', 7, 260, 17);  // Prefilled mid-run: a larger step than any before, so scratch grows.
  ASSERT_LE(next_block, kTestScriptBlocks);

  uint64_t state = 0x9a9b;
  const auto token = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<int32_t>((state >> 33) % config.vocab_size);
  };
  const auto step_of = [&](char name, int new_tokens) {
    Sequence& seq = seqs[name];
    SequenceStep step{seq.id, {}, seq.cached, seq.blocks};
    for (int i = 0; i < new_tokens; ++i) step.tokens.push_back(token());
    EXPECT_LE(seq.cached + new_tokens, static_cast<int>(seq.blocks.size()) * kKvBlockTokens);
    seq.cached += new_tokens;
    return step;
  };
  const auto run = [&](const std::vector<SequenceStep>& batch, const std::string& what) {
    absl::StatusOr<std::vector<std::vector<float>>> on_eager = eager->Forward(batch);
    absl::StatusOr<std::vector<std::vector<float>>> on_graphs = graphs->Forward(batch);
    ASSERT_TRUE(on_eager.ok()) << what << ": " << on_eager.status();
    ASSERT_TRUE(on_graphs.ok()) << what << ": " << on_graphs.status();
    ExpectSameLogits(*on_eager, *on_graphs, what);
  };
  // Prefill runs eagerly on both; its cache is copied over anyway, so that the decode steps
  // compare graphs with eager launches alone.
  const auto same_cache = [&](const std::string& what, std::vector<uint8_t>* eager_cache) {
    absl::StatusOr<std::vector<uint8_t>> from_eager = eager->ExportKv(AllBlocks(), {});
    absl::StatusOr<std::vector<uint8_t>> from_graphs = graphs->ExportKv(AllBlocks(), {});
    ASSERT_TRUE(from_eager.ok()) << from_eager.status();
    ASSERT_TRUE(from_graphs.ok()) << from_graphs.status();
    size_t differ = 0;
    for (size_t i = 0; i < from_eager->size() && i < from_graphs->size(); ++i) {
      differ += (*from_eager)[i] != (*from_graphs)[i];
    }
    EXPECT_TRUE(*from_eager == *from_graphs) << "the KV caches differ " << what << ": " << differ
                                             << " of " << from_eager->size() << " bytes";
    if (eager_cache != nullptr) *eager_cache = *std::move(from_eager);
  };
  const auto prefill = [&](const std::string& names) {
    std::vector<SequenceStep> batch;
    for (char name : names) batch.push_back(step_of(name, seqs[name].prompt));
    run(batch, "prefill of " + names);
    std::vector<uint8_t> cache;
    same_cache("after the prefill of " + names + " (both eager)", &cache);
    ASSERT_FALSE(cache.empty());
    ASSERT_TRUE(graphs->ImportKv(AllBlocks(), {}, cache).ok());
  };
  prefill("A");
  prefill("B");
  prefill("CDEF");
  if (HasFatalFailure()) return;

  absl::StatusOr<CudaGraphStats> before = GetCudaGraphStats(*graphs);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_TRUE(before->enabled);
  for (int round = 0; round < 30; ++round) {
    if (round == 20) {
      prefill("G");
      if (HasFatalFailure()) return;
    }
    std::vector<SequenceStep> batch;
    std::string names;
    if (round == 7) {  // Mixed: a 3-token chunk after a cached prefix, and a decode.
      batch = {step_of('E', 3), step_of('F', 1)};
      names = "E (3 tokens) F";
    } else {
      static const char* const kPatterns[] = {"A", "AB", "ACD", "ABCD", "CDE"};
      names = round == 12 ? "ABCDEF" : kPatterns[round % 5];
      if (round >= 20 && round % 5 == 4) names = "CDEG";
      int max_context = 0;
      for (char name : names) {
        batch.push_back(step_of(name, 1));
        max_context = std::max(max_context, batch.back().cached_tokens + 1);
      }
      names += absl::StrCat(" (max context ", max_context, ")");
    }
    const bool off = round == 27;
    if (off) {
      ASSERT_TRUE(SetCudaGraphsEnabled(*graphs, false).ok());
    }
    absl::StatusOr<CudaGraphStats> prior = GetCudaGraphStats(*graphs);
    run(batch, absl::StrCat("decode round ", round, ": ", names));
    if (HasFatalFailure()) return;
    if (off) {
      absl::StatusOr<CudaGraphStats> during = GetCudaGraphStats(*graphs);
      ASSERT_TRUE(prior.ok() && during.ok());
      EXPECT_FALSE(during->enabled);
      EXPECT_EQ(during->graph_steps, prior->graph_steps) << "graphs were off";
      ASSERT_TRUE(SetCudaGraphsEnabled(*graphs, true).ok());
    }
  }
  same_cache("after the decode steps", nullptr);

  absl::StatusOr<CudaGraphStats> stats = GetCudaGraphStats(*graphs);
  ASSERT_TRUE(stats.ok());
  std::printf(
      "%s %s graphs: %lld replayed, %lld eager, %lld captured, %lld failed, %lld evicted, "
      "%lld invalidated, %lld held; last failure: %s\n",
      config.name.c_str(), gpu::DTypeName(GetParam().dtype),
      static_cast<long long>(stats->graph_steps), static_cast<long long>(stats->eager_steps),
      static_cast<long long>(stats->captures), static_cast<long long>(stats->failed_keys),
      static_cast<long long>(stats->evictions), static_cast<long long>(stats->invalidations),
      static_cast<long long>(stats->cached_graphs), stats->last_failure.c_str());
  EXPECT_EQ(stats->failed_keys, 0) << stats->last_failure;
  // Every decode round that graphs cover (30 rounds less the mixed one, the batch of 6, which
  // is past max_step_sequences, and the one with graphs off) either replays a graph or is the
  // first use of its key since the last invalidation, which runs eagerly and is then captured.
  // The 4 prefills run eagerly. The scratch grows (dropping every graph) at least once: G's
  // prompt and the batch of 6 are larger than what was preallocated.
  EXPECT_GE(stats->captures, 4);
  EXPECT_EQ(stats->graph_steps, 30 - 3 - stats->captures);
  EXPECT_EQ(stats->eager_steps, 4 + 3 + stats->captures);
  EXPECT_GE(stats->invalidations, 1);
  EXPECT_EQ(stats->evictions, 0);
  EXPECT_LE(stats->cached_graphs, stats->captures);
  absl::StatusOr<CudaGraphStats> eager_stats = GetCudaGraphStats(*eager);
  ASSERT_TRUE(eager_stats.ok());
  EXPECT_FALSE(eager_stats->enabled);
  EXPECT_EQ(eager_stats->graph_steps, 0);
  EXPECT_EQ(eager_stats->captures, 0);
  EXPECT_FALSE(GetCudaGraphStats(*reference_).ok()) << "the reference is not a CudaBackend";
}

// ForwardAndSample samples on the device; its tokens are what the host sampler draws from the
// logits Forward returns for the same step (two backends in step, greedy and seeded rows).
TEST_P(CudaBackendTest, SamplesOnTheDeviceAsTheHostDoes) {
  std::unique_ptr<ForwardBackend> by_logits = Cuda();
  std::unique_ptr<ForwardBackend> by_tokens = Cuda();
  ASSERT_TRUE(by_logits != nullptr && by_tokens != nullptr);
  const int64_t vocab = GetParam().config.vocab_size;
  int compared = 0;
  for (const ScriptStep& step : TestScript(static_cast<int>(vocab))) {
    std::vector<gpu::sampling::SamplingParams> params(step.batch.size());
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].temperature = i % 3 == 0 ? 0.0f : 0.8f;  // greedy, and seeded draws
      params[i].top_k = i % 3 == 2 ? 20 : 0;
      params[i].top_p = i % 3 == 1 ? 0.9f : 1.0f;
      params[i].seed = 1000 + i;
      params[i].offset = static_cast<uint64_t>(compared);
    }
    absl::StatusOr<std::vector<std::vector<float>>> logits = by_logits->Forward(step.batch);
    absl::StatusOr<std::vector<int32_t>> tokens = by_tokens->ForwardAndSample(step.batch, params);
    ASSERT_TRUE(logits.ok()) << logits.status();
    ASSERT_TRUE(tokens.ok()) << step.what << ": " << tokens.status();
    ASSERT_EQ(tokens->size(), step.batch.size());
    for (size_t i = 0; i < step.batch.size(); ++i) {
      absl::StatusOr<std::vector<int32_t>> on_host =
          gpu::sampling::SampleOnHost((*logits)[i], 1, vocab, {params[i]});
      ASSERT_TRUE(on_host.ok());
      EXPECT_EQ((*tokens)[i], on_host->front()) << step.what << ", sequence " << i;
      ++compared;
    }
  }
  EXPECT_GT(compared, 10);
  // One parameter set per sequence, or an error.
  EXPECT_FALSE(by_tokens->ForwardAndSample({{1, {1}, 0, {0}}}, {}).ok());
}

INSTANTIATE_TEST_SUITE_P(Models, CudaBackendTest, ::testing::ValuesIn(AllCases()), CaseName);

TEST(CudaBackendOptionsTest, UnsupportedShapesAndOptionsAreErrors) {
  if (gpu::Device::Count() == 0) GTEST_SKIP() << "no CUDA device";
  std::unique_ptr<model::WeightSource> weights = model::RandomWeights(kWeightSeed);
  // The presets' head_dim of 16 is not one of the kernels'.
  absl::StatusOr<std::unique_ptr<ForwardBackend>> tiny =
      CreateCudaBackend(*model::ModelPreset("tiny"), *weights, CudaBackendOptions{});
  ASSERT_FALSE(tiny.ok());
  EXPECT_TRUE(absl::StrContains(tiny.status().message(), "head_dim 16")) << tiny.status();
  CudaBackendOptions fp32;
  fp32.dtype = DType::kFloat32;
  EXPECT_FALSE(CreateCudaBackend(CudaTestModels()[0], *weights, fp32).ok());
  CudaBackendOptions utilization;
  utilization.gpu_memory_utilization = 1.5;
  EXPECT_FALSE(CreateCudaBackend(CudaTestModels()[0], *weights, utilization).ok());
  CudaBackendOptions skinny;
  skinny.skinny_gemm_max_rows = 9;
  absl::StatusOr<std::unique_ptr<ForwardBackend>> too_many =
      CreateCudaBackend(CudaTestModels()[0], *weights, skinny);
  ASSERT_FALSE(too_many.ok());
  EXPECT_TRUE(absl::StrContains(too_many.status().message(), "skinny_gemm_max_rows is 9"))
      << too_many.status();
}

TEST(CudaBackendOptionsTest, SizesTheCacheFromFreeMemory) {
  if (gpu::Device::Count() == 0) GTEST_SKIP() << "no CUDA device";
  std::unique_ptr<model::WeightSource> weights = model::RandomWeights(kWeightSeed);
  CudaBackendOptions options;
  options.gpu_memory_utilization = 0.05;  // Leave the card to the other tests.
  absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
      CreateCudaBackend(CudaTestModels()[0], *weights, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::printf("5%% of the free memory holds %d KV blocks of tiny-d64\n",
              (*backend)->num_kv_blocks());
  EXPECT_GT((*backend)->num_kv_blocks(), kTestScriptBlocks);
}

}  // namespace
}  // namespace troupe::serving::engine
