// serving_gpu_bench: the CUDA serving backend (serving/engine/cuda_backend.h) on a GPU host, with
// random weights of a model preset.
//
//   . .gpu_bundle/env.sh
//   .gpu_bundle/bin/serving_gpu_bench --model=opt-13b --json_out=RESULTS/serving_opt-13b.json
//
// It measures, in one run:
//  (a) the decode step: Forward() over --batches sequences of one new token each, whose caches
//      hold --context tokens (filled by prefilling random prompts first); host wall time per
//      step, which includes the logits' copy to the host (Forward returns them), mean of --steps
//      after --warmup; with --cuda_graphs replayed from CUDA graphs (captured during the warmup,
//      CudaBackendOptions::cuda_graphs), and in the same run without them ("eager"); for
//      batches the skinny GEMM takes, also with every product on cuBLAS ("cublas");
//  (b) its floor: the bytes a decode step must read (the weights it multiplies by, the KV it
//      attends to) over the device-to-device copy bandwidth measured in the same run (1 GiB
//      cudaMemcpyAsync, bytes read plus bytes written, as gpu_kernel_bench counts it), and the
//      ratio step / floor;
//  (c) generation throughput: --gen_requests requests of --gen_prompt random tokens each
//      generating --gen_tokens greedy tokens through the real ContinuousBatcher and block
//      manager (host sampling and scheduling count), as tokens generated per second of wall time
//      from the first Add to the last token (prefill included, as Hugging Face's generate);
//  (d) prefill: one prompt of each of --prefill_lengths tokens, alone.
// tools/hf_generate_peer.py measures (c) with Hugging Face transformers for comparison.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gpu/buffer.h"
#include "gpu/device.h"
#include "gpu/dtype.h"
#include "gpu/event.h"
#include "gpu/stream.h"
#include "serving/engine/continuous_batcher.h"
#include "serving/engine/cuda_backend.h"
#include "serving/engine/forward_backend.h"
#include "serving/kv/block_manager.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

ABSL_FLAG(std::string, model, "opt-1.3b", "Model preset (serving/model/config.h).");
ABSL_FLAG(std::string, dtype, "fp16", "fp16 or bf16.");
ABSL_FLAG(std::string, batches, "1,2,4,8,16,32,64", "Decode batch sizes.");
ABSL_FLAG(int, context, 512, "Tokens in each sequence's cache when decoding.");
ABSL_FLAG(int, steps, 5, "Timed decode steps per batch size.");
ABSL_FLAG(int, warmup, 2,
          "Untimed decode steps before them (with --cuda_graphs the first captures the graph).");
ABSL_FLAG(bool, cuda_graphs, true,
          "Replay decode steps from CUDA graphs (the decode table's step time; its eager column is "
          "timed with graphs off on the same backend), and in the generation measurement.");
ABSL_FLAG(int, gen_requests, 32, "Requests of the generation measurement.");
ABSL_FLAG(int, gen_prompt, 128, "Prompt tokens of each generation request.");
ABSL_FLAG(int, gen_tokens, 128, "New tokens of each generation request.");
ABSL_FLAG(std::string, prefill_lengths, "512,2048", "Prompt lengths of the prefill measurement.");
ABSL_FLAG(int, prefill_reps, 3, "Timed prefills of each length (after one untimed).");
ABSL_FLAG(int, num_kv_blocks, 0, "KV cache blocks; 0 sizes the cache from free memory.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the random weights and prompts.");
ABSL_FLAG(std::string, json_out, "", "Write the results as JSON here.");
ABSL_FLAG(int, skinny_gemm_max_rows,
          troupe::serving::engine::CudaBackendOptions{}.skinny_gemm_max_rows,
          "Decode batches up to this size run their projections on the skinny GEMM "
          "(CudaBackendOptions::skinny_gemm_max_rows); the cublas column times them without.");

namespace troupe::tools {
namespace {

using serving::engine::ForwardBackend;
using serving::engine::kKvBlockTokens;
using serving::engine::SequenceStep;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "serving_gpu_bench: %s: %s\n", what.c_str(), status.ToString().c_str());
  std::exit(1);
}

template <class T>
T Check(absl::StatusOr<T> value, const std::string& what) {
  if (!value.ok()) Fail(what, value.status());
  return *std::move(value);
}

void Check(const absl::Status& status, const std::string& what) {
  if (!status.ok()) Fail(what, status);
}

std::vector<int> ParseInts(const std::string& flag, const std::string& list) {
  std::vector<int> values;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int value = 0;
    if (!absl::SimpleAtoi(part, &value) || value < 1) {
      Fail(absl::StrCat("--", flag),
           absl::InvalidArgumentError(absl::StrCat("\"", part, "\" is not a positive integer")));
    }
    values.push_back(value);
  }
  return values;
}

absl::Status CudaOk(cudaError_t code) {
  if (code == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(cudaGetErrorName(code), ": ", cudaGetErrorString(code)));
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// CopyBandwidth is the device-to-device copy rate of 1 GiB in GB/s, counting bytes read plus
// bytes written (gpu_kernel_bench's ceiling): the median of 10 copies after 3 untimed ones.
double CopyBandwidth(gpu::Stream& stream) {
  const size_t bytes = size_t{1} << 30;
  gpu::DeviceBuffer from = Check(gpu::DeviceBuffer::Allocate(bytes, 0), "copy source");
  gpu::DeviceBuffer to = Check(gpu::DeviceBuffer::Allocate(bytes, 0), "copy destination");
  const auto raw = static_cast<cudaStream_t>(stream.raw());
  Check(CudaOk(cudaMemsetAsync(from.data(), 0x5a, bytes, raw)), "cudaMemsetAsync");
  gpu::Event start = Check(gpu::Event::Create(0), "event");
  gpu::Event stop = Check(gpu::Event::Create(0), "event");
  std::vector<double> ms;
  for (int i = 0; i < 13; ++i) {
    Check(start.Record(stream), "event record");
    Check(CudaOk(cudaMemcpyAsync(to.data(), from.data(), bytes, cudaMemcpyDeviceToDevice, raw)),
          "cudaMemcpyAsync");
    Check(stop.Record(stream), "event record");
    const float elapsed = Check(gpu::Event::ElapsedMilliseconds(start, stop), "event time");
    if (i >= 3) ms.push_back(elapsed);
  }
  std::sort(ms.begin(), ms.end());
  return 2.0 * bytes / (ms[ms.size() / 2] * 1e-3) / 1e9;
}

std::vector<int32_t> RandomTokens(std::mt19937_64& random, int n, int vocab) {
  std::uniform_int_distribution<int32_t> token(0, vocab - 1);
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = token(random);
  return tokens;
}

struct DecodeResult {
  int batch;
  double step_ms, eager_ms, floor_ms, weight_bytes, kv_bytes;
  int64_t graph_replays;  // Timed steps (of --steps) that replayed a graph.
  double logits_ms;       // Forward's step, every row of logits copied back
  double cublas_ms;       // The step with every product on cuBLAS (no skinny GEMM)
};

struct PrefillResult {
  int tokens;
  double ms;
};

struct GenerationResult {
  int requests, prompt, new_tokens, steps;
  double seconds, tokens_per_s;
};

int Main() {
  const serving::model::ModelConfig config =
      Check(serving::model::ModelPreset(absl::GetFlag(FLAGS_model)), "--model");
  const std::string dtype_flag = absl::GetFlag(FLAGS_dtype);
  if (dtype_flag != "fp16" && dtype_flag != "bf16") {
    Fail("--dtype", absl::InvalidArgumentError(absl::StrCat(dtype_flag, " is not fp16 or bf16")));
  }
  const gpu::DType dtype = dtype_flag == "fp16" ? gpu::DType::kFloat16 : gpu::DType::kBFloat16;
  const std::vector<int> batches = ParseInts("batches", absl::GetFlag(FLAGS_batches));
  const std::vector<int> prefill_lengths =
      ParseInts("prefill_lengths", absl::GetFlag(FLAGS_prefill_lengths));
  const int context = absl::GetFlag(FLAGS_context);
  const int steps = std::max(1, absl::GetFlag(FLAGS_steps));
  const int warmup = std::max(0, absl::GetFlag(FLAGS_warmup));
  std::mt19937_64 random(absl::GetFlag(FLAGS_seed));

  const gpu::Device device = Check(gpu::Device::Get(0), "device 0");
  std::printf("device: %s, %d SMs, %.1f GiB\n", device.name().c_str(), device.sm_count(),
              device.total_memory_bytes() / 1073741824.0);
  double copy_gbps = 0;
  {
    gpu::Stream stream = Check(gpu::Stream::Create(0), "stream");
    copy_gbps = CopyBandwidth(stream);
  }
  std::printf("device-to-device copy: %.0f GB/s (read + write)\n", copy_gbps);

  // The bytes a decode step reads in full: every weight but the embedding tables, of which it
  // reads a row per sequence (OPT's token embedding is also its output head: read in full).
  double weight_bytes = 0;
  for (const serving::model::TensorSpec& spec : serving::model::ExpectedTensors(config)) {
    const bool gathered = spec.name == "model.decoder.embed_positions.weight" ||
                          spec.name == "model.embed_tokens.weight";
    if (gathered) continue;
    double elements = 1;
    for (int64_t d : spec.shape) elements *= d;
    weight_bytes += elements * gpu::SizeOf(dtype);
  }
  const double kv_bytes_per_token = serving::model::KvBytesPerToken(config, dtype);

  std::unique_ptr<serving::model::WeightSource> weights =
      serving::model::RandomWeights(absl::GetFlag(FLAGS_seed));
  const bool cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  serving::engine::CudaBackendOptions options;
  options.dtype = dtype;
  options.cuda_graphs = cuda_graphs;
  options.num_kv_blocks = absl::GetFlag(FLAGS_num_kv_blocks);
  options.skinny_gemm_max_rows = absl::GetFlag(FLAGS_skinny_gemm_max_rows);
  Clock::time_point start = Clock::now();
  std::unique_ptr<ForwardBackend> backend =
      Check(serving::engine::CreateCudaBackend(config, *weights, options), "CreateCudaBackend");
  const double load_seconds = Seconds(start);
  std::printf(
      "%s %s: %.2f GB of weights read per decode step, %d KV blocks (%.1f GB), "
      "loaded in %.1f s\n",
      config.name.c_str(), dtype_flag.c_str(), weight_bytes / 1e9, backend->num_kv_blocks(),
      backend->num_kv_blocks() * kv_bytes_per_token * kKvBlockTokens / 1e9, load_seconds);

  // (a, b) Decode. Each sequence owns consecutive blocks for its context and the decode steps;
  // every batch size decodes from position `context` again, overwriting the same slots.
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const int blocks_per_seq =
      (context + warmup + steps + kKvBlockTokens) / kKvBlockTokens;  // + 1 token of slack
  if (static_cast<int64_t>(max_batch) * blocks_per_seq > backend->num_kv_blocks()) {
    Fail("--batches/--context",
         absl::ResourceExhaustedError(absl::StrCat(
             max_batch, " sequences of ", context, " tokens need ", max_batch * blocks_per_seq,
             " KV blocks; the cache has ", backend->num_kv_blocks())));
  }
  std::vector<std::vector<int32_t>> tables(max_batch);
  for (int s = 0; s < max_batch; ++s) {
    for (int b = 0; b < blocks_per_seq; ++b) tables[s].push_back(s * blocks_per_seq + b);
  }
  start = Clock::now();
  // Steps of at most max_step_tokens tokens: the backend's scratch is sized for those.
  const int prefill_step_tokens = std::max(options.max_step_tokens, context);
  for (int first = 0; first < max_batch;) {
    std::vector<SequenceStep> batch;
    for (; first < max_batch && static_cast<int>(batch.size() + 1) * context <= prefill_step_tokens;
         ++first) {
      batch.push_back({first, RandomTokens(random, context, config.vocab_size), 0, tables[first]});
    }
    Check(backend->Forward(batch).status(), "prefilling the decode contexts");
  }
  std::printf("prefilled %d x %d tokens in %.2f s\n\n", max_batch, context, Seconds(start));
  const auto graph_stats = [&] {
    return Check(serving::engine::GetCudaGraphStats(*backend), "CUDA graph stats");
  };
  std::printf(
      "step: a decode step as the engine runs it (ForwardAndSample, greedy: the tokens are\n"
      "sampled on the GPU); eager: the same without CUDA graphs; logits: Forward, every row of\n"
      "logits copied to the host; cublas: the step with every product on cuBLAS (batches up\n"
      "to skinny_gemm_max_rows use the skinny GEMM); floor: weights + KV bytes over the copy\n"
      "bandwidth\n");
  std::printf("%6s %10s %10s %10s %10s %10s %8s %8s %12s %8s\n", "batch", "step ms", "eager ms",
              "logits ms", "cublas ms", "floor ms", "ratio", "eager", "tokens/s", "graphs");
  std::vector<DecodeResult> decode_results;
  for (int batch_size : batches) {
    // Times warmup + steps decode steps from position `context`; the mean step ms and how many
    // of the timed steps replayed a graph.
    // With `sample`, a step is the engine's (ForwardAndSample: greedy tokens sampled on the
    // device, only they come back); without, Forward's (every row of logits copied back).
    const auto time_steps = [&](bool graphs, double* kv_bytes, bool sample = true) {
      Check(serving::engine::SetCudaGraphsEnabled(*backend, graphs), "turning CUDA graphs on/off");
      double total_ms = 0;
      int64_t replays = 0;
      *kv_bytes = 0;
      for (int i = 0; i < warmup + steps; ++i) {
        std::vector<SequenceStep> batch;
        for (int s = 0; s < batch_size; ++s) {
          batch.push_back({s, RandomTokens(random, 1, config.vocab_size), context + i, tables[s]});
        }
        const int64_t replays_before = graph_stats().graph_steps;
        const Clock::time_point step_start = Clock::now();
        if (sample) {
          const std::vector<gpu::sampling::SamplingParams> greedy(
              batch_size, gpu::sampling::SamplingParams{.temperature = 0.0f});
          Check(backend->ForwardAndSample(batch, greedy).status(), "decode step");
        } else {
          Check(backend->Forward(batch).status(), "decode step");
        }
        if (i >= warmup) {
          total_ms += Seconds(step_start) * 1e3;
          *kv_bytes += static_cast<double>(batch_size) * (context + i + 1) * kv_bytes_per_token;
          replays += graph_stats().graph_steps - replays_before;
        }
      }
      return std::make_pair(total_ms / steps, replays);
    };
    double kv_bytes = 0;
    const double eager_ms = time_steps(false, &kv_bytes).first;
    DecodeResult r{batch_size, eager_ms, eager_ms, 0, weight_bytes, kv_bytes / steps, 0, 0, 0};
    if (cuda_graphs) std::tie(r.step_ms, r.graph_replays) = time_steps(true, &kv_bytes);
    r.logits_ms = time_steps(cuda_graphs, &kv_bytes, /*sample=*/false).first;
    r.cublas_ms = r.step_ms;  // Batches past skinny_gemm_max_rows run on cuBLAS anyway.
    if (batch_size <= options.skinny_gemm_max_rows) {
      Check(serving::engine::SetSkinnyGemmMaxRows(*backend, 0), "turning the skinny GEMM off");
      r.cublas_ms = time_steps(cuda_graphs, &kv_bytes).first;
      Check(serving::engine::SetSkinnyGemmMaxRows(*backend, options.skinny_gemm_max_rows),
            "turning the skinny GEMM on");
    }
    r.floor_ms = (r.weight_bytes + r.kv_bytes) / (copy_gbps * 1e9) * 1e3;
    std::printf("%6d %10.3f %10.3f %10.3f %10.3f %10.3f %8.2f %8.2f %12.0f %5lld/%d\n", r.batch,
                r.step_ms, r.eager_ms, r.logits_ms, r.cublas_ms, r.floor_ms, r.step_ms / r.floor_ms,
                r.eager_ms / r.floor_ms, r.batch / (r.step_ms * 1e-3),
                static_cast<long long>(r.graph_replays), steps);
    decode_results.push_back(r);
  }
  Check(serving::engine::SetCudaGraphsEnabled(*backend, cuda_graphs), "turning CUDA graphs on/off");
  const auto print_graph_stats = [&](const char* when) {
    const serving::engine::CudaGraphStats g = graph_stats();
    std::printf(
        "CUDA graphs %s: %s; %lld steps replayed, %lld eager, %lld graphs captured, "
        "%lld keys failed%s%s\n",
        when, g.enabled ? "on" : "off", static_cast<long long>(g.graph_steps),
        static_cast<long long>(g.eager_steps), static_cast<long long>(g.captures),
        static_cast<long long>(g.failed_keys), g.last_failure.empty() ? "" : ": ",
        g.last_failure.c_str());
  };
  print_graph_stats("after the decode table");

  // (c) Generation through the ContinuousBatcher.
  GenerationResult generation{absl::GetFlag(FLAGS_gen_requests),
                              absl::GetFlag(FLAGS_gen_prompt),
                              absl::GetFlag(FLAGS_gen_tokens),
                              0,
                              0,
                              0};
  {
    serving::kv::BlockManagerOptions block_options;
    block_options.num_gpu_blocks = backend->num_kv_blocks();
    serving::kv::BlockManager blocks =
        Check(serving::kv::BlockManager::Create(block_options), "block manager");
    serving::engine::ContinuousBatcher batcher =
        Check(serving::engine::ContinuousBatcher::Create(backend.get(), &blocks, {}), "batcher");
    std::vector<serving::engine::GenerationRequest> requests;
    for (int r = 0; r < generation.requests; ++r) {
      requests.push_back({r,
                          RandomTokens(random, generation.prompt, config.vocab_size),
                          generation.new_tokens,
                          {}});
    }
    int64_t generated = 0;
    start = Clock::now();
    for (serving::engine::GenerationRequest& request : requests) {
      Check(batcher.Add(std::move(request)), "adding a request");
    }
    while (batcher.HasWork()) {
      generated += Check(batcher.Step(), "batcher step").size();
      ++generation.steps;
    }
    generation.seconds = Seconds(start);
    generation.tokens_per_s = generated / generation.seconds;
    std::printf(
        "\ngeneration: %d requests x (%d prompt + %d new tokens): %lld tokens in %d "
        "steps, %.2f s, %.0f tokens/s\n",
        generation.requests, generation.prompt, generation.new_tokens,
        static_cast<long long>(generated), generation.steps, generation.seconds,
        generation.tokens_per_s);
    print_graph_stats("after generation");
  }

  // (d) Prefill of one prompt alone.
  std::vector<PrefillResult> prefill_results;
  for (int length : prefill_lengths) {
    if (length > config.max_position_embeddings) {
      std::printf("prefill of %d tokens: skipped, past the model's context of %d\n", length,
                  config.max_position_embeddings);
      continue;
    }
    std::vector<int32_t> table;
    for (int b = 0; b * kKvBlockTokens < length; ++b) table.push_back(b);
    const std::vector<SequenceStep> step = {
        {1, RandomTokens(random, length, config.vocab_size), 0, table}};
    Check(backend->Forward(step).status(), "prefill");
    const int reps = std::max(1, absl::GetFlag(FLAGS_prefill_reps));
    start = Clock::now();
    for (int i = 0; i < reps; ++i) Check(backend->Forward(step).status(), "prefill");
    prefill_results.push_back({length, Seconds(start) * 1e3 / reps});
    std::printf("prefill of %d tokens: %.2f ms (%.0f tokens/s)\n", length,
                prefill_results.back().ms, length / (prefill_results.back().ms * 1e-3));
  }

  const std::string path = absl::GetFlag(FLAGS_json_out);
  if (!path.empty()) {
    const serving::engine::CudaGraphStats g = graph_stats();
    std::string failure;  // JSON-escaped: the message may quote.
    for (char c : g.last_failure) {
      if (c == '"' || c == '\\') failure += '\\';
      failure += (c == '\n' ? ' ' : c);
    }
    std::string json = absl::StrFormat(
        "{\n  \"device\": \"%s\",\n  \"model\": \"%s\",\n  \"dtype\": \"%s\",\n"
        "  \"copy_gbps\": %.1f,\n  \"weight_bytes_per_step\": %.0f,\n  \"num_kv_blocks\": %d,\n"
        "  \"load_seconds\": %.2f,\n  \"context\": %d,\n  \"cuda_graphs\": %s,\n"
        "  \"cuda_graph_stats\": {\"graph_steps\": %d, \"eager_steps\": %d, \"captures\": %d, "
        "\"failed_keys\": %d, \"evictions\": %d, \"invalidations\": %d, \"last_failure\": "
        "\"%s\"},\n  \"decode\": [\n",
        device.name(), config.name, dtype_flag, copy_gbps, weight_bytes, backend->num_kv_blocks(),
        load_seconds, context, cuda_graphs ? "true" : "false", g.graph_steps, g.eager_steps,
        g.captures, g.failed_keys, g.evictions, g.invalidations, failure);
    for (size_t i = 0; i < decode_results.size(); ++i) {
      const DecodeResult& r = decode_results[i];
      absl::StrAppend(
          &json,
          absl::StrFormat("    {\"batch\": %d, \"step_ms\": %.4f, \"eager_step_ms\": %.4f, "
                          "\"logits_step_ms\": %.4f, \"cublas_step_ms\": %.4f, "
                          "\"graph_replays\": %d, \"floor_ms\": %.4f, \"ratio\": %.3f, "
                          "\"eager_ratio\": %.3f, \"kv_bytes\": %.0f, \"tokens_per_s\": %.1f}%s\n",
                          r.batch, r.step_ms, r.eager_ms, r.logits_ms, r.cublas_ms, r.graph_replays,
                          r.floor_ms, r.step_ms / r.floor_ms, r.eager_ms / r.floor_ms, r.kv_bytes,
                          r.batch / (r.step_ms * 1e-3), i + 1 < decode_results.size() ? "," : ""));
    }
    absl::StrAppend(
        &json, absl::StrFormat("  ],\n  \"generation\": {\"requests\": %d, \"prompt_tokens\": %d, "
                               "\"new_tokens\": %d, \"steps\": %d, \"seconds\": %.3f, "
                               "\"tokens_per_s\": %.1f},\n  \"prefill\": [\n",
                               generation.requests, generation.prompt, generation.new_tokens,
                               generation.steps, generation.seconds, generation.tokens_per_s));
    for (size_t i = 0; i < prefill_results.size(); ++i) {
      absl::StrAppend(&json, absl::StrFormat("    {\"tokens\": %d, \"ms\": %.3f}%s\n",
                                             prefill_results[i].tokens, prefill_results[i].ms,
                                             i + 1 < prefill_results.size() ? "," : ""));
    }
    json += "  ]\n}\n";
    std::ofstream(path) << json;
    std::printf("wrote %s\n", path.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace troupe::tools

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return troupe::tools::Main();
}
