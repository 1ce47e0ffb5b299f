// Step-time models of the placement planner: how long one prefill batch or one decode step of an
// instance takes, as a function of the batch (DistServe, Appendix A). Two implementations of one
// interface:
//   FittedLatencyModel  DistServe's analytic form, its constants fitted to a measured Profile
//                       (profile.h) by least squares on relative error, per tensor-parallel degree;
//   RooflineModel       a GPU's datasheet (dense FLOP rate, HBM and NVLink bandwidth) and
//                       efficiency factors, for hardware that cannot be profiled here.
//
//   absl::StatusOr<model::ModelConfig> config = model::ModelPreset("opt-13b");
//   absl::StatusOr<GpuSpec> gpu = GpuPreset("a100-80gb");
//   RooflineModel roofline(*config, *gpu);
//   absl::StatusOr<std::unique_ptr<StepTimeModel>> tp2 = roofline.For(/*tensor_parallel=*/2,
//                                                                     /*pipeline_stages=*/1);
//   double ttft = (*tp2)->PrefillSeconds(/*batch=*/1, /*tokens=*/512, /*tokens_squared=*/512 *
//   512);
//
// A StepTimeModel's times are those of one step through ALL the model's layers on tp GPUs per
// stage, the stages one after another; the simulator (simulator.h) pipelines the stages and adds
// their per-stage overhead. The equations are in docs/placement.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "serving/model/config.h"
#include "serving/placement/profile.h"

namespace troupe::serving::placement {

// StepTimeModel is one instance's step times at a fixed parallelism (tp, pp).
class StepTimeModel {
 public:
  virtual ~StepTimeModel() = default;

  // PrefillSeconds is one prefill batch of `batch` prompts with t = `tokens` (Σ lengths) and
  // t₂ = `tokens_squared` (Σ lengths²).
  virtual double PrefillSeconds(int batch, int64_t tokens, int64_t tokens_squared) const = 0;

  // DecodeSeconds is one decode step of `batch` sequences (one new token each) whose contexts
  // hold `context_tokens` tokens together.
  virtual double DecodeSeconds(int batch, int64_t context_tokens) const = 0;

  // PrefillSecondsOf is PrefillSeconds of a batch given by its prompt lengths.
  double PrefillSecondsOf(absl::Span<const int> lengths) const;
};

// StepTimeModels makes the StepTimeModel of an instance of any parallelism.
class StepTimeModels {
 public:
  virtual ~StepTimeModels() = default;

  // For is the model of an instance of `tensor_parallel` GPUs per stage and `pipeline_stages`
  // stages. Degrees under 1 are InvalidArgument; a degree the model cannot speak for is NotFound
  // naming it and the fix.
  virtual absl::StatusOr<std::unique_ptr<StepTimeModel>> For(int tensor_parallel,
                                                             int pipeline_stages) const = 0;

  // Describe is one line for logs: what the times come from.
  virtual std::string Describe() const = 0;
};

// ---------------------------------------------------------------------------------------------
// The fitted model (DistServe Appendix A), per layer, times the layers:
//   prefill  T = C1·(4·t·h² + 2·t·h·m)/tp + C2·3·h·t₂/(b·tp) + C3
//   decode   T = C4·B·(4h² + 2hm)/tp + C5·3·h·t/tp + C6
// h hidden size, m FFN size, b the KV block size, B the decode batch, t the tokens (prompt
// tokens for prefill, context tokens for decode), t₂ = Σ prompt lengths². The paper's decode GEMM
// term C4·(4h² + 2hm) has no batch factor; fitted per TP it is a constant, indistinguishable from
// C6, so the GEMM term here scales with the batch (the rows multiplied), as the released
// simulator's a + b·Σctx + c·B does; the weights' read time is then in C6.
// Decode is fitted in two pieces (batch < threshold, batch >= threshold) when that fits the
// profile markedly better than one piece (DistServe's released fit splits at B = 95).

struct LatencyModelOptions {
  // b of the prefill attention term: the KV cache's block size (DistServe and the engine: 16).
  int block_size = 16;
  // Each piece of a piecewise decode fit needs at least this many samples.
  int min_piece_samples = 3;
  // A piecewise decode fit is kept only if it cuts the fit's summed squared relative error by
  // at least this fraction against one piece ("where the data demand it").
  double piecewise_min_gain = 0.25;
  // A tensor-parallel degree missing from the profile is scaled from the TP1 fit: the compute
  // terms (C1, C2, C4, C5) divide by tp as the equations say, the constants stay, and no
  // all-reduce cost is added, so scaled degrees are optimistic. False: such a degree is NotFound.
  bool scale_unprofiled_tp = true;
};

// FitError is how far a fit is from the samples it was fitted to: |predicted - measured| /
// measured, averaged and at its worst.
struct FitError {
  int samples = 0;
  double mean_relative = 0;
  double max_relative = 0;
};

// PrefillCoefficients are C1..C3 (seconds per feature unit, see above).
struct PrefillCoefficients {
  double c1 = 0;
  double c2 = 0;
  double c3 = 0;
};

// DecodeCoefficients are C4..C6 of one piece.
struct DecodeCoefficients {
  double c4 = 0;
  double c5 = 0;
  double c6 = 0;
};

// TensorParallelFit is the fit of one tensor-parallel degree.
struct TensorParallelFit {
  int tensor_parallel = 1;
  PrefillCoefficients prefill;
  // Decode steps of batch < decode_threshold use `decode_small`, the others `decode_large`;
  // decode_threshold 0 means one piece (decode_large).
  int decode_threshold = 0;
  DecodeCoefficients decode_small;
  DecodeCoefficients decode_large;
  FitError prefill_error;
  FitError decode_error;
};

class FittedLatencyModel : public StepTimeModels {
 public:
  // Fit fits every tensor-parallel degree of `profile` for `config`'s shapes. Errors
  // (InvalidArgument, naming the profile's model, the phase, the degree and the fix): the
  // profile's model differs from config.name, a degree has fewer than 3 samples of a phase, or
  // its samples cannot separate the terms (one token count only).
  static absl::StatusOr<FittedLatencyModel> Fit(const Profile& profile,
                                                const model::ModelConfig& config,
                                                const LatencyModelOptions& options = {});

  // FittedLatencyModel builds a model from known fits (tests, or constants from elsewhere).
  FittedLatencyModel(model::ModelConfig config, std::vector<TensorParallelFit> fits,
                     LatencyModelOptions options = {}, std::string source = "coefficients");

  absl::StatusOr<std::unique_ptr<StepTimeModel>> For(int tensor_parallel,
                                                     int pipeline_stages) const override;
  std::string Describe() const override;

  // fits are the fitted degrees, ascending.
  const std::vector<TensorParallelFit>& fits() const { return fits_; }

  // Report is a table of every degree's coefficients, decode split and errors.
  std::string Report() const;

 private:
  model::ModelConfig config_;
  std::vector<TensorParallelFit> fits_;
  LatencyModelOptions options_;
  std::string source_;
};

// ---------------------------------------------------------------------------------------------
// The roofline model.

// GpuSpec is what the roofline model and the memory check need of a GPU.
struct GpuSpec {
  std::string name;
  double dense_fp16_flops = 0;    // FLOP/s, dense (no sparsity) FP16/BF16 tensor cores
  double hbm_bytes_per_s = 0;     // HBM bandwidth
  double memory_bytes = 0;        // HBM capacity
  double nvlink_bytes_per_s = 0;  // NVLink bandwidth per GPU, one direction
};

// GpuPreset returns a100-80gb, h100-sxm or h200 (datasheet values, cited in the .cc); an
// unknown name is InvalidArgument listing the known ones.
absl::StatusOr<GpuSpec> GpuPreset(std::string_view name);
std::vector<std::string> GpuPresetNames();

struct RooflineOptions {
  // Fraction of the dense FP16 peak that prefill GEMMs reach. This engine's OPT-13B prefill of
  // 2048 tokens ran at 603 TFLOP/s on an H200 (docs/results/serving_gpu.md, run 3): 61% of its
  // 989 TFLOP/s datasheet peak.
  double flops_efficiency = 0.6;
  // Fraction of the HBM datasheet bandwidth a memory-bound step reaches. This engine's OPT-13B
  // batch-1 decode step took 7.66 ms on an H200 (docs/results/serving_gpu.md, run 3) for 25.7 GB
  // of weights, i.e. 3.36 TB/s of the 4.8 TB/s datasheet: 70%.
  double bandwidth_efficiency = 0.7;
  // Fraction of the NVLink datasheet bandwidth an all-reduce reaches (assumed: NCCL's ring
  // bus bandwidth is typically 75-85% of the link's; not measured in this project).
  double link_efficiency = 0.8;
  // Fixed cost of one all-reduce (assumed: NCCL's small-message latency over NVLink is on the
  // order of 10 µs; not measured in this project). Two all-reduces per layer (Megatron).
  double allreduce_latency_s = 10e-6;
  // Bytes per weight, activation and KV element: FP16, as DistServe serves OPT.
  int bytes_per_element = 2;
};

class RooflineModel : public StepTimeModels {
 public:
  RooflineModel(model::ModelConfig config, GpuSpec gpu, RooflineOptions options = {});

  // For accepts any tp >= 1 and pp >= 1; the step times do not depend on pp (the stages run one
  // after another; the simulator adds their overhead).
  absl::StatusOr<std::unique_ptr<StepTimeModel>> For(int tensor_parallel,
                                                     int pipeline_stages) const override;
  std::string Describe() const override;

  const GpuSpec& gpu() const { return gpu_; }
  const RooflineOptions& options() const { return options_; }

 private:
  model::ModelConfig config_;
  GpuSpec gpu_;
  RooflineOptions options_;
};

}  // namespace troupe::serving::placement
