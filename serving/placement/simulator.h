// A discrete-event simulator of a serving cluster, DistServe's planning tool (§4): requests
// arrive, are prefilled in FCFS batches, hand their KV to a decode instance and decode with
// continuous batching, every step timed by a StepTimeModel (latency_model.h). It reports each
// request's TTFT and TPOT, summarized by serving/workload/slo.h as the benchmark client does.
//
//   SimulatedCluster cluster;
//   cluster.prefill = {.instances = 1, .config = {2, 1}, .model = prefill_model.get(),
//                      .kv_blocks = 4000};
//   cluster.decode = {.instances = 1, .config = {1, 1}, .model = decode_model.get(),
//                     .kv_blocks = 3000};
//   absl::StatusOr<Simulator> simulator = Simulator::Create(cluster);
//   absl::StatusOr<const std::vector<workload::RequestTiming>*> timings =
//       simulator->Run(requests);
//   double attainment = workload::Attainment(**timings, slo);
//
// What it models (docs/placement.md has the details and what it leaves out):
//   prefill   shortest-queue routing; FCFS batches under a token and request budget, no
//             skipping; a batch needs KV blocks for its prompts, held until the decode side has
//             pulled them; pipeline stages as a pipeline (a batch enters stage 1 when the
//             previous one leaves it; stage time = T/pp + a per-stage overhead);
//   transfer  a request's KV (bytes per token × prompt) over the link, one pull at a time per
//             decode instance, overlapping its decode steps;
//   decode    least-loaded routing; DistServe's pull rule (FCFS while the free blocks hold the
//             prompt and the pulls in flight hold under 5% of the cache); continuous batching,
//             each step timed at the current batch and Σ context; a request that needs a block
//             when none is free preempts the newest running request (swapped out, back first);
//             pp micro-batches in flight (a token every T(B/pp) + pp·overhead);
//   colocated vLLM-style instances: each step admits waiting prompts FCFS (prefill first) and
//             runs them with the running decodes in one pass: the prefill model over the new
//             tokens plus one per running sequence, and the decode model's context term;
//             optionally Sarathi-style chunked prefill under a token budget.
// TTFT is the first token's time (the end of the prompt's prefill) minus the arrival; TPOT is
// (last token - first token) / (output tokens - 1), 0 for one token. Nothing allocates per token;
// a Simulator reuses its buffers from run to run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "serving/placement/latency_model.h"
#include "serving/workload/slo.h"
#include "serving/workload/workload.h"

namespace troupe::serving::placement {

// InstanceConfig is one instance's parallelism: tensor_parallel GPUs per stage, pipeline_stages
// stages.
struct InstanceConfig {
  int tensor_parallel = 1;
  int pipeline_stages = 1;

  int gpus() const { return tensor_parallel * pipeline_stages; }
  // Name is "TP2", "PP3" or "TP3·PP3" (DistServe's notation).
  std::string Name() const;
  bool operator==(const InstanceConfig& other) const {
    return tensor_parallel == other.tensor_parallel && pipeline_stages == other.pipeline_stages;
  }
};

// SimulationMode says which instances a simulation has:
//   kDisaggregated  prefill and decode instances, KV moving between them;
//   kPrefillOnly    prefill instances alone (a request ends at its first token), for DistServe's
//                   Algorithm 1, which sizes each phase by itself;
//   kDecodeOnly     decode instances alone (a request's first token is at its arrival);
//   kColocated      colocated instances (the `prefill` setup), prefill and decode on each.
enum class SimulationMode { kDisaggregated, kPrefillOnly, kDecodeOnly, kColocated };

// PhaseSetup is one phase's instances, all alike.
struct PhaseSetup {
  int instances = 1;
  InstanceConfig config;
  const StepTimeModel* model = nullptr;  // not owned; outlives the Simulator
  int64_t kv_blocks = 0;                 // per instance, blocks of SimulatorOptions::block_size
};

struct SimulatedCluster {
  SimulationMode mode = SimulationMode::kDisaggregated;
  PhaseSetup prefill;  // also the colocated instances
  PhaseSetup decode;
  // The KV of one prompt token (all layers and heads), and the bandwidth one request's pull
  // gets; 0 bandwidth is an instant transfer.
  double kv_bytes_per_token = 0;
  double kv_transfer_bytes_per_s = 0;
};

struct SimulatorOptions {
  // Tokens per KV block: DistServe's and the engine's 16.
  int block_size = 16;
  // Prefill batch budget: the engine's prefill instance defaults, which are DistServe's released
  // evaluation flags (8192 tokens, 128 requests). The paper instead targets a batch of about L_m
  // tokens (~512 for OPT-13B on an A100), the length that saturates the GPU; set these lower to
  // model that.
  int prefill_max_batch_tokens = 8192;
  int prefill_max_batch_requests = 128;
  // Decode batch cap: the engine's default (max_batch_requests 256); DistServe's released flags
  // allow 1024, which the KV capacity of OPT-13B..175B keeps well away from anyway.
  int decode_max_batch_requests = 256;
  // DistServe's pull rule: a decode instance starts another pull only while the prompts being
  // pulled hold under this share of its blocks (the released code's 5%, the engine's
  // decode_pull_share).
  double decode_pull_share = 0.05;
  // Added to every pipeline stage's time when pp > 1: the stage hand-off. DistServe's simulator
  // adds pp ms per step, an unprofiled guess ("TODO" in its code); so does this one.
  double pipeline_stage_overhead_s = 1e-3;
  // Colocated instances: the engine's colocated defaults (2048 tokens per step, 256 requests).
  int colocated_max_batch_tokens = 2048;
  int colocated_max_batch_requests = 256;
  // Colocated: Sarathi-style chunked prefill. Each step's token budget is
  // colocated_max_batch_tokens: the running decodes first, prompt chunks FCFS in the rest.
  bool chunked_prefill = false;
};

// SimulationStats counts what one run did.
struct SimulationStats {
  double end_s = 0;             // when the last request finished
  int64_t prefill_batches = 0;  // prefill batches (colocated: steps with prefill tokens)
  int64_t prefill_tokens = 0;
  int64_t decode_steps = 0;
  int64_t decode_tokens = 0;  // Σ batch over decode steps
  int64_t preemptions = 0;
  int64_t failed = 0;     // requests that cannot fit an instance's cache
  double transfer_s = 0;  // Σ KV transfer time
};

class Simulator {
 public:
  // Create checks the cluster and the options; a bad field is InvalidArgument naming it and the
  // fix.
  static absl::StatusOr<Simulator> Create(const SimulatedCluster& cluster,
                                          const SimulatorOptions& options = {});

  Simulator(Simulator&&) noexcept;
  Simulator& operator=(Simulator&&) noexcept;
  ~Simulator();

  // Run simulates `requests` (sorted by arrival) with every arrival time multiplied by
  // `time_scale` (1 / rate for a workload drawn at rate 1), and returns one timing per request,
  // in order; the vector is the Simulator's, valid until the next Run. A request whose KV cannot
  // fit an instance's cache, however empty, is `failed`. Unsorted requests, lengths under 1 or a
  // time_scale that is not positive are InvalidArgument naming the input.
  absl::StatusOr<const std::vector<workload::RequestTiming>*> Run(
      const std::vector<workload::Request>& requests, double time_scale = 1.0);

  // RunAlone is every request's timing as if it were alone in the cluster (the limit of Run as
  // the rate goes to 0: no queueing, batches of one), in O(requests). The decode steps are timed
  // at the request's mid-generation context, exact for step times linear in the context and
  // otherwise at most as slow as the steps (convex times); so an attainment under a target here
  // means under it at every rate.
  absl::StatusOr<const std::vector<workload::RequestTiming>*> RunAlone(
      const std::vector<workload::Request>& requests);

  // stats are the last run's counts.
  const SimulationStats& stats() const;
  const SimulatedCluster& cluster() const;

 private:
  struct State;  // the instances, the event queue and the buffers reused across runs
  explicit Simulator(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Simulate is one run of a fresh Simulator: timings of `requests` as they come.
absl::StatusOr<std::vector<workload::RequestTiming>> Simulate(
    const SimulatedCluster& cluster, const std::vector<workload::Request>& requests,
    const SimulatorOptions& options = {});

}  // namespace troupe::serving::placement
