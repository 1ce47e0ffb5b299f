// The placement search (DistServe §4.1-4.2): which parallelism each phase gets and how many
// instances of each, to serve a rate at the highest goodput per GPU under TTFT/TPOT SLOs.
//
//   absl::StatusOr<model::ModelConfig> model = model::ModelPreset("opt-66b");
//   RooflineModel times(*model, *GpuPreset("a100-80gb"));
//   ClusterSpec cluster{.nodes = 4, .gpus_per_node = 8, .gpu = *GpuPreset("a100-80gb")};
//   SearchOptions options;
//   options.slo = {2.5, 0.15};
//   absl::StatusOr<Plan> plan = PlanPlacement(*model, times, cluster, Affinity::kLow,
//                                             /*rate=*/6.0, options);
//
// Affinity::kHigh is Algorithm 1 (fast cross-node links): each phase's parallelism is searched
// by itself (prefill simulated alone for TTFT, decode alone for TPOT), and the instance counts
// are n = ⌈R / prefill goodput⌉, m = ⌈R / decode goodput⌉. Affinity::kLow is Algorithm 2 (slow
// cross-node links, DistServe's testbed): for each number of nodes a prefill/decode pair spans
// (its inter-op degree across nodes), every pair of intra-node configurations whose GPUs fit one
// node together is simulated jointly, the same pipeline stage of both phases sharing a node so
// that KV moves over NVLink; the best pair is replicated ⌈R / goodput⌉ times.
// A configuration's goodput is the highest rate at which the attainment (both SLOs met, the
// paper's joint rule, workload/slo.h) reaches the target, found by bisection on the rate over
// one workload whose arrivals are rescaled (the same requests at every rate). The chosen plan
// is finally simulated whole at the requested rate.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "serving/model/config.h"
#include "serving/placement/latency_model.h"
#include "serving/placement/simulator.h"
#include "serving/workload/slo.h"
#include "serving/workload/workload.h"

namespace troupe::serving::placement {

// Affinity is how fast the links between nodes are, which decides the algorithm.
enum class Affinity { kHigh, kLow };

// ParseAffinity accepts "high" and "low"; AffinityName is its inverse.
absl::StatusOr<Affinity> ParseAffinity(std::string_view name);
const char* AffinityName(Affinity affinity);

// PaperSlo is DistServe's SLO for a model and dataset (OSDI'24, §6.1): chatbot OPT-13B 0.25 s /
// 0.1 s, OPT-66B 2.5 s / 0.15 s, OPT-175B 4 s / 0.2 s; code OPT-66B 0.125 s / 0.2 s;
// summarization OPT-66B 15 s / 0.15 s (TTFT / TPOT). NotFound for a pair the paper did not
// evaluate, saying to give the SLO.
absl::StatusOr<workload::Slo> PaperSlo(std::string_view model, workload::Dataset dataset);

// ClusterSpec is the hardware the plan places instances on.
struct ClusterSpec {
  // DistServe's testbed: 4 nodes of 8 A100-80GB SXM, NVLink within a node, 25 Gbps between.
  int nodes = 4;
  int gpus_per_node = 8;
  GpuSpec gpu;  // its memory and NVLink bandwidth (the roofline also takes its rates)
  double cross_node_bytes_per_s = 25e9 / 8;
  // DistServe's N: the most nodes one instance may span; 0 means all of them.
  int max_nodes_per_instance = 0;
};

struct SearchOptions {
  workload::Dataset dataset = workload::Dataset::kChatbot;
  workload::Slo slo;
  // The share of requests that must meet both SLOs: DistServe's 90%.
  double attainment_target = 0.9;
  // Requests per simulation, drawn once at rate 1 from `seed` and rescaled to each trial rate.
  // The released search used 300-1000 Poisson requests with seed 0.
  int num_requests = 1000;
  uint64_t seed = 0;
  // The longest request (prompt + output); 0 or more than the model's context: the context
  // (OPT: 2048, DistServe's cap).
  int max_total_tokens = 0;
  double arrival_cv = 1.0;  // Poisson arrivals, as the paper
  // The bisection on the rate stops when the interval is narrower than this share of its low
  // end (the released search stopped at 0.25 requests/s per GPU, absolute).
  double rate_precision = 0.02;
  // GPU memory for weights and KV: DistServe's evaluation flag 0.95, less a reserve per GPU for
  // what neither is (CUDA context, cuBLAS workspace, a full prefill batch's activations; assumed,
  // not profiled: about 1 GB for OPT-175B's 8192-token batch at TP3).
  double gpu_memory_utilization = 0.95;
  double reserved_bytes_per_gpu = 2.0 * (1 << 30);
  // Worker threads over configurations (0: the machine's cores). The plan does not depend on it.
  int threads = 0;
  SimulatorOptions simulator;
  // Progress hears one line at a time (from the calling thread), e.g. to print it.
  std::function<void(const std::string&)> progress;
};

// KvCapacityBlocks is the KV blocks an instance of `config` holds: its GPUs' memory (times the
// utilization, less the reserve) minus the model's weights, over the KV of a block; 0 when the
// weights do not fit (the paper's memory check).
int64_t KvCapacityBlocks(const model::ModelConfig& model, const InstanceConfig& config,
                         const GpuSpec& gpu, const SearchOptions& options);

// GoodputResult is one configuration's bisection.
struct GoodputResult {
  double rate = 0;  // requests/s of the simulated instances together; 0: not even at a trickle
  // The rate the instances sustain with every request arriving at once: the bisection's upper
  // end. A finite workload can meet a TPOT SLO above it (the queue grows, but the run ends before
  // the wait, spread over a request's tokens, passes the SLO); no steady rate can.
  double saturated_rate = 0;
  int simulations = 0;
};

// MaxGoodput bisects the highest rate, up to the saturated throughput, at which `simulator`'s
// cluster still attains the target over `requests` (drawn at rate 1; each trial rescales their
// arrivals). A cluster that misses the target with every request alone has goodput 0, found
// without a run.
absl::StatusOr<GoodputResult> MaxGoodput(Simulator& simulator,
                                         const std::vector<workload::Request>& requests,
                                         const workload::Slo& slo, double attainment_target,
                                         double rate_precision);

// Candidate is one evaluated configuration: a phase alone (Algorithm 1, or colocated) or a
// prefill/decode pair (Algorithm 2).
struct Candidate {
  enum class Kind { kPrefill, kDecode, kPair, kColocated };
  Kind kind = Kind::kPair;
  InstanceConfig prefill;  // kPrefill, kPair; kColocated: the instance
  InstanceConfig decode;   // kDecode, kPair
  int inter_op_nodes = 1;  // kPair: nodes the pair spans
  int gpus = 0;
  double goodput = 0;  // requests/s of this configuration's instances together
  double goodput_per_gpu = 0;
  // Name is e.g. "prefill TP2 | decode TP1" or "colocated TP4".
  std::string Name() const;
};

// PhasePlan is one phase of a plan: its instances' parallelism and number.
struct PhasePlan {
  InstanceConfig config;
  int instances = 0;
  int64_t kv_blocks = 0;  // per instance
  double goodput = 0;     // per instance, alone (Algorithm 1) or in its pair (Algorithm 2)
};

struct Plan {
  Affinity affinity = Affinity::kLow;
  PhasePlan prefill;
  PhasePlan decode;
  // Algorithm 2: the nodes one prefill/decode pair spans, its stages one per node (their pipeline
  // degree is this times the stages each node holds). Algorithm 1: 0 (placed freely).
  int inter_op_nodes = 0;
  // The chosen configuration's goodput per GPU (prefill and decode GPUs both counted): the
  // pair's (Algorithm 2), or 1 / (gpus_p / g_p + gpus_d / g_d) of the two phases (Algorithm 1).
  double goodput_per_gpu = 0;
  double rate = 0;  // the rate planned for (requested, or what the whole cluster serves)
  int gpus = 0;     // GPUs of all the plan's instances
  bool fits_cluster = true;
  // The whole plan simulated at `rate` (num_requests per instance pair): its attainment.
  double attainment = 0;
  std::vector<Candidate> candidates;  // every configuration evaluated, best first per kind
  // The simulated workload's mean prompt and output lengths (tokens).
  double mean_input_tokens = 0;
  double mean_output_tokens = 0;
  int simulations = 0;
  std::vector<std::string> notes;  // what the plan's reader must know (it exceeds the cluster…)
};

// InstancePlacement is where one instance of a plan runs: `gpus_per_node` consecutive GPUs from
// `first_gpu` on each of `nodes` consecutive nodes from `node` (an instance spans nodes when
// Algorithm 2 puts its stages on several, or when it has more GPUs than a node).
struct InstancePlacement {
  Phase phase = Phase::kPrefill;
  int index = 0;  // among the phase's instances
  int node = 0;
  int first_gpu = 0;
  int gpus_per_node = 1;
  int nodes = 1;
};

// PlaceInstances lays a plan's instances out on the cluster: Algorithm 2's pairs node group by
// node group, each pair's prefill GPUs then its decode GPUs on every node of its group;
// Algorithm 1's instances first-fit, largest first. FailedPrecondition if they do not fit,
// saying how many GPUs the plan needs and the cluster has.
absl::StatusOr<std::vector<InstancePlacement>> PlaceInstances(const Plan& plan,
                                                              const ClusterSpec& cluster);

// PlanPlacement runs Algorithm 1 or 2 (see the file comment) for `rate` requests/s (0: as many
// instances as the cluster holds). Bad inputs are InvalidArgument naming the field and the fix;
// no configuration fitting the GPUs' memory, or none meeting the SLOs even at a trickle, is
// FailedPrecondition saying what would.
absl::StatusOr<Plan> PlanPlacement(const model::ModelConfig& model, const StepTimeModels& times,
                                   const ClusterSpec& cluster, Affinity affinity, double rate,
                                   const SearchOptions& options);

// BestColocated is the same search over colocated instances (vLLM-style; chunked prefill with
// options.simulator.chunked_prefill): every tp x pp an instance may have, each simulated alone.
// The best is candidates[0]; it is the baseline a disaggregated plan is compared with.
absl::StatusOr<std::vector<Candidate>> SearchColocated(const model::ModelConfig& model,
                                                       const StepTimeModels& times,
                                                       const ClusterSpec& cluster,
                                                       const SearchOptions& options);

}  // namespace troupe::serving::placement
