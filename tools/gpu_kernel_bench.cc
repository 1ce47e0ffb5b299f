// gpu_kernel_bench: the GPU layer's kernels against the card's ceilings, on a GPU host.
//
//   . .gpu_bundle/env.sh && .gpu_bundle/bin/gpu_kernel_bench --out=RESULTS/kernels.json
//
// Ceilings, measured in the same run: device-to-device copy bandwidth (cudaMemcpyAsync of 1 GiB,
// counting bytes read plus bytes written) and the cuBLAS fp16 GEMM rate (8192^3, fp32
// accumulation, random data). Each kernel's figure is reported as a ratio to its ceiling; the
// PyTorch peer (tools/sdpa_peer.py) runs in the same command and tools/gpu_kernel_report.py
// joins both into docs/results/gpu_kernels.md.
//
// Timing: CUDA events around --launches back-to-back launches (so the host's launch latency,
// about 4 us, is not counted against kernels that run for 20-30 us), after warm-up; the median
// of --reps such measurements, divided by --launches. Back-to-back launches on a stream still
// leave gaps between kernels (1.5-2 us more than a graph's on an H200); --graph times the
// elementwise kernels as replays of a captured CUDA graph instead, which is how a serving
// engine issues a decode step. Inputs are random, and memory-bound
// kernels rotate through enough input sets to defeat the L2 cache.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gpu/attention/decode_attention.h"
#include "gpu/attention/prefill_attention.h"
#include "gpu/dtype.h"
#include "gpu/kernels/activation.h"
#include "gpu/kernels/embedding.h"
#include "gpu/kernels/normalization.h"
#include "gpu/kernels/residual.h"
#include "gpu/kernels/rotary.h"
#include "gpu/stream.h"
#include "tools/bench_device.h"

ABSL_FLAG(std::string, out, "", "Write the results as JSON here.");
ABSL_FLAG(int, reps, 30, "Timed repetitions per measurement (the median is reported).");
ABSL_FLAG(int, launches, 10, "Back-to-back launches per timed repetition.");
ABSL_FLAG(bool, graph, false,
          "Time the elementwise kernels as CUDA graph replays of --launches calls (as a serving "
          "engine replays a captured step), without the stream's gaps between launches.");
ABSL_FLAG(std::string, filter, "",
          "Run only the kernels whose name contains this text (the ceilings always run), e.g. "
          "--filter=prefill for a profiler.");

namespace troupe::tools {
namespace {

using gpu::DType;

#define CHECK_CUDA(call)                                                              \
  do {                                                                                \
    cudaError_t e = (call);                                                           \
    if (e != cudaSuccess) {                                                           \
      std::fprintf(stderr, "gpu_kernel_bench: %s failed: %s\n", #call,                \
                   cudaGetErrorString(e));                                            \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

void CheckStatus(const absl::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "gpu_kernel_bench: %s: %s\n", what, status.ToString().c_str());
    std::exit(1);
  }
}

struct Result {
  std::string kernel;
  std::string shape;
  std::string dtype;
  double ms = 0;
  std::string metric;  // "GB/s" or "TFLOP/s"
  double value = 0;
  double ceiling = 0;
  std::string ceiling_name;
};

std::vector<Result> results;

// Record keeps a result and says so at once on stderr (progress for long runs).
void Record(Result result) {
  std::fprintf(stderr, "measured %s (%s, %s): %.4f ms\n", result.kernel.c_str(),
               result.shape.c_str(), result.dtype.c_str(), result.ms);
  results.push_back(std::move(result));
}

gpu::Stream* fill_stream = nullptr;  // Set in Main.

// DeviceRandom allocates `count` elements of `dtype` filled (on the GPU) with about N(0, 1).
void* DeviceRandom(DType dtype, size_t count, uint64_t seed) {
  void* device = nullptr;
  CHECK_CUDA(cudaMalloc(&device, count * gpu::SizeOf(dtype)));
  CheckStatus(FillRandom(dtype, device, count, seed, *fill_stream), "FillRandom");
  CheckStatus(fill_stream->Synchronize(), "FillRandom");
  return device;
}

void* DeviceInts(const std::vector<int32_t>& values) {
  void* device = nullptr;
  CHECK_CUDA(cudaMalloc(&device, values.size() * 4));
  CHECK_CUDA(cudaMemcpy(device, values.data(), values.size() * 4, cudaMemcpyHostToDevice));
  return device;
}

// MedianMs is the median over --reps of the time of --launches calls of `launch(i)` (divided by
// --launches), after `warmup` untimed calls. With `graph`, the --launches calls are captured
// once in a CUDA graph and each measurement times one replay of it.
double MedianMs(gpu::Stream& stream, const std::function<void(int)>& launch, int warmup = 5,
                bool graph = false) {
  const int launches = absl::GetFlag(FLAGS_launches);
  cudaStream_t raw = static_cast<cudaStream_t>(stream.raw());
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) launch(i);
  CHECK_CUDA(cudaStreamSynchronize(raw));
  std::vector<float> times;
  int call = warmup;
  cudaGraphExec_t replay = nullptr;
  if (graph) {
    cudaGraph_t captured;
    CHECK_CUDA(cudaStreamBeginCapture(raw, cudaStreamCaptureModeThreadLocal));
    for (int l = 0; l < launches; ++l) launch(call++);
    CHECK_CUDA(cudaStreamEndCapture(raw, &captured));
    CHECK_CUDA(cudaGraphInstantiate(&replay, captured, 0));
    CHECK_CUDA(cudaGraphDestroy(captured));
    CHECK_CUDA(cudaGraphLaunch(replay, raw));  // Warm-up replay.
    CHECK_CUDA(cudaStreamSynchronize(raw));
  }
  for (int i = 0; i < absl::GetFlag(FLAGS_reps); ++i) {
    CHECK_CUDA(cudaEventRecord(start, raw));
    if (graph) {
      CHECK_CUDA(cudaGraphLaunch(replay, raw));
    } else {
      for (int l = 0; l < launches; ++l) launch(call++);
    }
    CHECK_CUDA(cudaEventRecord(stop, raw));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms / launches);
  }
  CHECK_CUDA(cudaGetLastError());
  if (replay != nullptr) CHECK_CUDA(cudaGraphExecDestroy(replay));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

bool Selected(const std::string& kernel) {
  return absl::StrContains(kernel, absl::GetFlag(FLAGS_filter));
}

double MeasureCopyBandwidth(gpu::Stream& stream) {
  const size_t bytes = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  CHECK_CUDA(cudaMalloc(&a, bytes));
  CHECK_CUDA(cudaMalloc(&b, bytes));
  CHECK_CUDA(cudaMemset(a, 0x5a, bytes));
  const double ms = MedianMs(stream, [&](int) {
    CHECK_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice,
                               static_cast<cudaStream_t>(stream.raw())));
  });
  cudaFree(a);
  cudaFree(b);
  const double gbps = 2.0 * bytes / (ms * 1e-3) / 1e9;  // Read + write.
  Record({"copy (ceiling)", "1 GiB device-to-device", "-", ms, "GB/s", gbps, 0, ""});
  return gbps;
}

// The read-only ceiling: read-bound kernels (decode attention) can beat the copy's rate, which
// pays for writes. Reported beside the copy; the targets use the copy.
void MeasureReadBandwidth(gpu::Stream& stream) {
  const size_t bytes = size_t{1} << 30;
  void* a = nullptr;
  void* sink = nullptr;
  CHECK_CUDA(cudaMalloc(&a, bytes));
  CHECK_CUDA(cudaMalloc(&sink, sizeof(uint64_t)));
  CHECK_CUDA(cudaMemset(a, 0x5a, bytes));
  const double ms = MedianMs(stream, [&](int) {
    CheckStatus(ReadAll(a, bytes, static_cast<uint64_t*>(sink), stream), "ReadAll");
  });
  cudaFree(a);
  cudaFree(sink);
  Record({"read (ceiling)", "1 GiB, read only", "-", ms, "GB/s", bytes / (ms * 1e-3) / 1e9, 0,
          ""});
}

double MeasureGemmRate(gpu::Stream& stream) {
  const int n = 8192;
  void* a = DeviceRandom(DType::kFloat16, size_t{1} * n * n, 1);
  void* b = DeviceRandom(DType::kFloat16, size_t{1} * n * n, 2);
  void* c = nullptr;
  CHECK_CUDA(cudaMalloc(&c, size_t{2} * n * n));
  cublasHandle_t handle;
  cublasCreate(&handle);
  cublasSetStream(handle, static_cast<cudaStream_t>(stream.raw()));
  const float one = 1, zero = 0;
  const double ms = MedianMs(stream, [&](int) {
    if (cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16F, n, b,
                     CUDA_R_16F, n, &zero, c, CUDA_R_16F, n, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
      std::fprintf(stderr, "gpu_kernel_bench: cublasGemmEx failed\n");
      std::exit(1);
    }
  });
  cublasDestroy(handle);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  const double tflops = 2.0 * n * n * n / (ms * 1e-3) / 1e12;
  Record({"cuBLAS GEMM (ceiling)", "8192x8192x8192", "fp16", ms, "TFLOP/s", tflops, 0,
                     ""});
  return tflops;
}

// Decode attention at OPT-13B head shapes: 40 heads of 128, batch 64, context 1024.
void BenchDecode(gpu::Stream& stream, DType dtype, double copy_gbps, int partition_tokens) {
  const std::string name = partition_tokens == 0
                               ? std::string("paged decode attention")
                               : absl::StrCat("paged decode, partitions of ", partition_tokens);
  if (!Selected(name)) return;
  const int batch = 64, heads = 40, dim = 128, context = 1024;
  const int blocks_per_seq = context / gpu::attention::kBlockSize;
  const int num_blocks = batch * blocks_per_seq;
  const size_t cache_elements = size_t{1} * num_blocks * heads * gpu::attention::kBlockSize * dim;
  void* query = DeviceRandom(dtype, size_t{1} * batch * heads * dim, 3);
  void* key_cache = DeviceRandom(dtype, cache_elements, 4);
  void* value_cache = DeviceRandom(dtype, cache_elements, 5);
  std::vector<int32_t> table(num_blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(6));  // Scattered, as in a real cache.
  void* tables = DeviceInts(table);
  void* lens = DeviceInts(std::vector<int32_t>(batch, context));
  void* output = nullptr;
  CHECK_CUDA(cudaMalloc(&output, size_t{1} * batch * heads * dim * gpu::SizeOf(dtype)));
  gpu::attention::DecodeAttentionParams params;
  params.batch = batch;
  params.num_heads = heads;
  params.cache = {num_blocks, heads, dim};
  params.max_blocks_per_seq = blocks_per_seq;
  params.max_context_len = context;
  params.scale = 1.0f / std::sqrt(static_cast<float>(dim));
  params.partition_tokens = partition_tokens;
  const size_t workspace_bytes = gpu::attention::DecodeAttentionWorkspaceBytes(params);
  void* workspace = nullptr;
  if (workspace_bytes > 0) CHECK_CUDA(cudaMalloc(&workspace, workspace_bytes));
  const double ms = MedianMs(stream, [&](int) {
    CheckStatus(gpu::attention::PagedDecodeAttention(
                    dtype, params, query, key_cache, value_cache,
                    static_cast<int32_t*>(tables), static_cast<int32_t*>(lens), workspace,
                    workspace_bytes, output, stream),
                "PagedDecodeAttention");
  });
  const double bytes = 2.0 * cache_elements * gpu::SizeOf(dtype);  // K and V, read once.
  Record({name, "batch 64, ctx 1024, 40x128 heads",
                     gpu::DTypeName(dtype), ms, "GB/s", bytes / (ms * 1e-3) / 1e9, copy_gbps,
                     "copy"});
  for (void* p : {query, key_cache, value_cache, tables, lens, output, workspace}) cudaFree(p);
}

// Causal prefill attention over `lengths` (packed), OPT-13B heads.
void BenchPrefill(gpu::Stream& stream, DType dtype, const std::vector<int32_t>& lengths,
                  double gemm_tflops,
                  gpu::attention::PrefillKernel kernel = gpu::attention::PrefillKernel::kAuto) {
  const std::string name = kernel == gpu::attention::PrefillKernel::kMmaSync
                               ? std::string("prefill, mma.sync kernel")
                               : std::string("prefill attention (causal)");
  if (!Selected(name)) return;
  const int heads = 40, dim = 128;
  std::vector<int32_t> cu = {0};
  double pairs = 0;
  for (int32_t l : lengths) {
    cu.push_back(cu.back() + l);
    pairs += 0.5 * l * (l + 1.0);  // (query, key) pairs a causal mask keeps.
  }
  const int total = cu.back();
  const size_t elements = size_t{1} * total * heads * dim;
  void* q = DeviceRandom(dtype, elements, 7);
  void* k = DeviceRandom(dtype, elements, 8);
  void* v = DeviceRandom(dtype, elements, 9);
  void* cu_seqlens = DeviceInts(cu);
  void* output = nullptr;
  CHECK_CUDA(cudaMalloc(&output, elements * gpu::SizeOf(dtype)));
  gpu::attention::PrefillAttentionParams params;
  params.batch = static_cast<int64_t>(lengths.size());
  params.num_heads = heads;
  params.num_kv_heads = heads;
  params.head_dim = dim;
  params.max_seqlen = *std::max_element(lengths.begin(), lengths.end());
  params.total_tokens = total;
  params.scale = 1.0f / std::sqrt(static_cast<float>(dim));
  params.kernel = kernel;
  const size_t workspace_bytes = gpu::attention::PrefillAttentionWorkspaceBytes(params);
  void* workspace = nullptr;
  CHECK_CUDA(cudaMalloc(&workspace, workspace_bytes));
  const double ms = MedianMs(stream, [&](int) {
    CheckStatus(gpu::attention::PrefillAttention(dtype, params, q, k, v,
                                                 static_cast<int32_t*>(cu_seqlens), workspace,
                                                 workspace_bytes, output, stream),
                "PrefillAttention");
  });
  const double flops = 4.0 * pairs * dim * heads;  // Two matrix products, 2 FLOPs per MAC.
  Record({name, absl::StrCat(lengths.size(), " x ", lengths[0], " tokens, 40x128 heads"),
                     gpu::DTypeName(dtype), ms, "TFLOP/s", flops / (ms * 1e-3) / 1e12,
                     gemm_tflops, "GEMM"});
  for (void* p : {q, k, v, cu_seqlens, output, workspace}) cudaFree(p);
}

// Elementwise kernels: each `launch(set)` reads and writes one of kSets independent sets of
// buffers, so consecutive launches miss in the L2 cache (each set is larger than 40 MB).
constexpr int kSets = 3;

void BenchElementwise(gpu::Stream& stream, const std::string& kernel, const std::string& shape,
                      DType dtype, double bytes_per_launch, double copy_gbps,
                      const std::function<absl::Status(int set)>& launch) {
  if (!Selected(kernel)) return;
  const double ms = MedianMs(
      stream, [&](int i) { CheckStatus(launch(i % kSets), kernel.c_str()); }, /*warmup=*/5,
      absl::GetFlag(FLAGS_graph));
  Record({kernel, shape, gpu::DTypeName(dtype), ms, "GB/s",
                     bytes_per_launch / (ms * 1e-3) / 1e9, copy_gbps, "copy"});
}

void BenchElementwiseKernels(gpu::Stream& stream, DType dtype, double copy_gbps) {
  namespace k = gpu::kernels;
  const int64_t rows = 4096, hidden = 5120;  // 4096 prompt tokens of OPT-13B.
  const double e = static_cast<double>(gpu::SizeOf(dtype));
  const size_t n = static_cast<size_t>(rows) * hidden;
  std::vector<void*> owned;
  auto random = [&](size_t count, uint64_t seed) {
    owned.push_back(DeviceRandom(dtype, count, seed));
    return owned.back();
  };
  std::vector<void*> in, residual, out, sum;
  for (int s = 0; s < kSets; ++s) {
    in.push_back(random(n, 100 + s));
    residual.push_back(random(n, 200 + s));
    out.push_back(random(n, 300 + s));
    sum.push_back(random(n, 400 + s));
  }
  void* gamma = random(hidden, 10);
  void* beta = random(hidden, 11);
  void* bias = random(hidden, 12);
  const std::string shape = "4096 x 5120";
  BenchElementwise(stream, "LayerNorm", shape, dtype, 2 * n * e, copy_gbps, [&](int s) {
    return k::LayerNorm(dtype, in[s], gamma, beta, out[s], rows, hidden, 1e-5f, stream);
  });
  BenchElementwise(stream, "RMSNorm", shape, dtype, 2 * n * e, copy_gbps, [&](int s) {
    return k::RmsNorm(dtype, in[s], gamma, out[s], rows, hidden, 1e-5f, stream);
  });
  BenchElementwise(stream, "bias + residual + RMSNorm (fused)", shape, dtype, 4 * n * e,
                   copy_gbps, [&](int s) {
                     return k::ResidualRmsNorm(dtype, in[s], bias, residual[s], gamma, sum[s],
                                               out[s], rows, hidden, 1e-5f, stream);
                   });
  BenchElementwise(stream, "bias + residual", shape, dtype, 3 * n * e, copy_gbps, [&](int s) {
    return k::BiasResidual(dtype, in[s], bias, residual[s], out[s], rows, hidden, stream);
  });
  BenchElementwise(stream, "bias + GELU", shape, dtype, 2 * n * e, copy_gbps, [&](int s) {
    return k::BiasActivation(dtype, k::ActivationKind::kGelu, in[s], bias, out[s], rows, hidden,
                             stream);
  });
  // RoPE in place on q and k of 40 heads x 128 (4096 tokens): reads and writes both.
  std::vector<void*> queries, keys;
  const size_t qk = static_cast<size_t>(rows) * 40 * 128;
  for (int s = 0; s < kSets; ++s) {
    queries.push_back(random(qk, 500 + s));
    keys.push_back(random(qk, 600 + s));
  }
  std::vector<int32_t> position_ids(rows);
  std::iota(position_ids.begin(), position_ids.end(), 0);
  void* positions = DeviceInts(position_ids);
  owned.push_back(positions);
  BenchElementwise(stream, "rotary (q and k, in place)", "4096 tokens, 40x128 heads", dtype,
                   4 * qk * e, copy_gbps, [&](int s) {
                     return k::RotaryEmbedding(dtype, static_cast<int32_t*>(positions),
                                               queries[s], keys[s], rows, 40, 40, 128, 128,
                                               k::RotaryOptions{}, stream);
                   });
  // SwiGLU at LLaMA-2-13B's MLP width: [gate | up] of 2 x 13824 in, 13824 out, 4096 tokens.
  const int64_t ffn = 13824;
  std::vector<void*> gate_up, act;
  for (int s = 0; s < kSets; ++s) {
    gate_up.push_back(random(static_cast<size_t>(rows) * 2 * ffn, 700 + s));
    act.push_back(random(static_cast<size_t>(rows) * ffn, 800 + s));
  }
  BenchElementwise(stream, "SiLU-gated (SwiGLU)", "4096 x 13824", dtype,
                   3.0 * rows * ffn * e, copy_gbps, [&](int s) {
                     return k::SiluAndMul(dtype, gate_up[s], act[s], rows, ffn, stream);
                   });
  // Embedding of 4096 random tokens from OPT's 50272-row table.
  const int64_t vocab = 50272;
  void* table = random(static_cast<size_t>(vocab) * hidden, 13);
  std::vector<int32_t> ids(rows);
  std::mt19937 rng(14);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng() % vocab);
  void* token_ids = DeviceInts(ids);
  owned.push_back(token_ids);
  BenchElementwise(stream, "embedding lookup", "4096 tokens x 5120", dtype, 2 * n * e, copy_gbps,
                   [&](int s) {
                     return k::Embedding(dtype, static_cast<int32_t*>(token_ids), table, out[s],
                                         rows, vocab, hidden, stream);
                   });
  for (void* p : owned) cudaFree(p);
}

void Report() {
  std::printf("%-34s %-36s %-5s %10s %12s %8s\n", "kernel", "shape", "dtype", "ms", "rate",
              "ceiling");
  std::string json = "[\n";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::printf("%-34s %-36s %-5s %10.4f %8.1f %-7s %s\n", r.kernel.c_str(), r.shape.c_str(),
                r.dtype.c_str(), r.ms, r.value, r.metric.c_str(),
                r.ceiling > 0 ? absl::StrFormat("%.0f%% of %s", 100 * r.value / r.ceiling,
                                                r.ceiling_name)
                                    .c_str()
                              : "");
    absl::StrAppend(&json,
                    absl::StrFormat("  {\"kernel\": \"%s\", \"shape\": \"%s\", \"dtype\": \"%s\", "
                                    "\"ms\": %.5f, \"metric\": \"%s\", \"value\": %.2f, "
                                    "\"ceiling\": %.2f, \"ceiling_name\": \"%s\"}%s\n",
                                    r.kernel, r.shape, r.dtype, r.ms, r.metric, r.value,
                                    r.ceiling, r.ceiling_name,
                                    i + 1 < results.size() ? "," : ""));
  }
  json += "]\n";
  if (!absl::GetFlag(FLAGS_out).empty()) std::ofstream(absl::GetFlag(FLAGS_out)) << json;
}

int Main() {
  cudaDeviceProp properties;
  CHECK_CUDA(cudaGetDeviceProperties(&properties, 0));
  std::printf("device: %s, %d SMs, %.0f GiB\n", properties.name,
              properties.multiProcessorCount, properties.totalGlobalMem / 1073741824.0);
  absl::StatusOr<gpu::Stream> stream = gpu::Stream::Create(0);
  CheckStatus(stream.status(), "Stream::Create");
  fill_stream = &*stream;
  const double copy_gbps = MeasureCopyBandwidth(*stream);
  MeasureReadBandwidth(*stream);
  // The memory-bound kernels first, for both types, before the GEMM ceiling and the attention
  // kernels heat the card: measured after them, the same elementwise kernels ran up to 15%
  // slower (docs/results/gpu_kernels.md).
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    BenchElementwiseKernels(*stream, dtype, copy_gbps);
  }
  const double gemm_tflops = MeasureGemmRate(*stream);
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    BenchDecode(*stream, dtype, copy_gbps, /*partition_tokens=*/0);
    BenchPrefill(*stream, dtype, {4096}, gemm_tflops);
    BenchPrefill(*stream, dtype, {1024, 1024, 1024, 1024}, gemm_tflops);
  }
  // Ablation: both partition sizes forced (the default picks one per shape).
  BenchDecode(*stream, DType::kFloat16, copy_gbps, 256);
  BenchDecode(*stream, DType::kFloat16, copy_gbps, 512);
  BenchDecode(*stream, DType::kFloat16, copy_gbps, 1024);
  // Ablation: the portable mma.sync prefill kernel that kAuto replaces on Hopper.
  BenchPrefill(*stream, DType::kFloat16, {4096}, gemm_tflops,
               gpu::attention::PrefillKernel::kMmaSync);

  Report();
  return 0;
}

}  // namespace
}  // namespace troupe::tools

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return troupe::tools::Main();
}
