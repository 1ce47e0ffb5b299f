#include "serving/placement/search.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gpu/dtype.h"
#include "serving/engine/cuda_parallel_plan.h"

namespace troupe::serving::placement {
namespace {

using workload::Request;

// The bisection's bracket search gives up after this many halvings of the rate below the
// saturated throughput: a configuration that attains the target at no rate that small has no
// goodput worth placing.
constexpr int kMaxHalvings = 20;
// A time scale that makes a workload drawn at rate 1 arrive all at once (within a microsecond).
constexpr double kAllAtOnce = 1e-9;
// The saturated throughput counts the requests finishing between these quantiles.
constexpr double kSaturationWindow[2] = {0.1, 0.9};

int64_t BlocksFor(int64_t tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

int Threads(int requested) {
  if (requested > 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

// ParallelFor runs fn(i) for i in [0, n) on `threads` threads; fn must only touch slot i.
void ParallelFor(int n, int threads, const std::function<void(int)>& fn) {
  threads = std::min(threads, n);
  if (threads <= 1) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int> next{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = next++; i < n; i = next++) fn(i);
    });
  }
  for (std::thread& w : workers) w.join();
}

// SaturatedThroughput is the rate the simulated instances sustain when every request arrives at
// once: requests finished per second between the kSaturationWindow quantiles of the finishing
// times (the ramp-up and the last stragglers, decoding in small batches, left out).
absl::StatusOr<double> SaturatedThroughput(Simulator& simulator,
                                           const std::vector<Request>& requests) {
  absl::StatusOr<const std::vector<workload::RequestTiming>*> timings =
      simulator.Run(requests, kAllAtOnce);
  if (!timings.ok()) return timings.status();
  std::vector<double> finished;
  for (size_t i = 0; i < requests.size(); ++i) {
    const workload::RequestTiming& t = (**timings)[i];
    if (t.failed) continue;
    finished.push_back(requests[i].arrival_s * kAllAtOnce + t.ttft_s +
                       t.tpot_s * (requests[i].output_tokens - 1));
  }
  if (finished.empty()) return 0.0;
  std::sort(finished.begin(), finished.end());
  const size_t first = static_cast<size_t>(kSaturationWindow[0] * (finished.size() - 1));
  const size_t last = static_cast<size_t>(kSaturationWindow[1] * (finished.size() - 1));
  if (last > first && finished[last] > finished[first]) {
    return (last - first) / (finished[last] - finished[first]);
  }
  return finished.back() > 0 ? finished.size() / finished.back() : 0.0;
}

int64_t KvBytesPerToken(const model::ModelConfig& model) {
  return model::KvBytesPerToken(model, gpu::DType::kFloat16);
}

// Valid is whether an instance of `config` may exist: tp divides the heads (and the runtime's
// KV heads and FFN size), pp divides the layers (the released search's rules).
bool Valid(const model::ModelConfig& model, const InstanceConfig& config) {
  return engine::CheckTensorParallel(model, config.tensor_parallel).ok() &&
         model.num_layers % config.pipeline_stages == 0;
}

// Evaluation is one configuration to simulate and what it came to.
struct Evaluation {
  Candidate candidate;
  SimulatedCluster cluster;  // the models are filled in by the worker
  absl::Status status;
  int simulations = 0;
};

// Evaluate bisects each evaluation's goodput, in parallel.
void Evaluate(std::vector<Evaluation>& evaluations, const StepTimeModels& times,
              const std::vector<Request>& requests, const SearchOptions& options) {
  ParallelFor(static_cast<int>(evaluations.size()), Threads(options.threads), [&](int i) {
    Evaluation& e = evaluations[i];
    std::unique_ptr<StepTimeModel> prefill_model, decode_model;
    SimulatedCluster& cluster = e.cluster;
    if (cluster.mode != SimulationMode::kDecodeOnly) {
      absl::StatusOr<std::unique_ptr<StepTimeModel>> m =
          times.For(cluster.prefill.config.tensor_parallel, cluster.prefill.config.pipeline_stages);
      if (!m.ok()) {
        e.status = m.status();
        return;
      }
      prefill_model = *std::move(m);
      cluster.prefill.model = prefill_model.get();
    }
    if (cluster.mode == SimulationMode::kDisaggregated ||
        cluster.mode == SimulationMode::kDecodeOnly) {
      absl::StatusOr<std::unique_ptr<StepTimeModel>> m =
          times.For(cluster.decode.config.tensor_parallel, cluster.decode.config.pipeline_stages);
      if (!m.ok()) {
        e.status = m.status();
        return;
      }
      decode_model = *std::move(m);
      cluster.decode.model = decode_model.get();
    }
    absl::StatusOr<Simulator> simulator = Simulator::Create(cluster, options.simulator);
    if (!simulator.ok()) {
      e.status = simulator.status();
      return;
    }
    absl::StatusOr<GoodputResult> goodput = MaxGoodput(
        *simulator, requests, options.slo, options.attainment_target, options.rate_precision);
    cluster.prefill.model = nullptr;
    cluster.decode.model = nullptr;
    if (!goodput.ok()) {
      e.status = goodput.status();
      return;
    }
    e.simulations = goodput->simulations;
    e.candidate.goodput = goodput->rate;
    e.candidate.goodput_per_gpu = goodput->rate / e.candidate.gpus;
  });
}

absl::Status CheckInputs(const model::ModelConfig& model, const ClusterSpec& cluster, double rate,
                         const SearchOptions& options) {
  if (absl::Status s = model::Validate(model); !s.ok()) return s;
  if (cluster.nodes < 1 || cluster.gpus_per_node < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the cluster has ", cluster.nodes, " nodes of ", cluster.gpus_per_node,
                     " GPUs; give it at least one node of one GPU (--nodes, --gpus_per_node)"));
  }
  if (cluster.max_nodes_per_instance < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_nodes_per_instance is ", cluster.max_nodes_per_instance,
                     "; use 0 (any) or a node count (--nodes_per_instance)"));
  }
  if (!(cluster.gpu.memory_bytes > 0) || !(cluster.gpu.nvlink_bytes_per_s > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPU \"", cluster.gpu.name, "\" needs its memory and NVLink bandwidth; use a preset (",
        "--gpu a100-80gb, h100-sxm or h200)"));
  }
  if (!(cluster.cross_node_bytes_per_s > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the cross-node bandwidth is ", cluster.cross_node_bytes_per_s,
                     " bytes/s; give a positive one (--cross_node_gbps, DistServe's testbed: 25)"));
  }
  if (!(rate >= 0) || !std::isfinite(rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the rate is ", rate,
                     " requests/s; give a positive rate (--rate) or 0 to fill the cluster"));
  }
  if (!(options.slo.ttft_s > 0) || !(options.slo.tpot_s > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the SLO is TTFT ", options.slo.ttft_s, " s, TPOT ", options.slo.tpot_s,
                     " s; both must be positive (--ttft_s, --tpot_s)"));
  }
  if (!(options.attainment_target > 0 && options.attainment_target <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the attainment target is ", options.attainment_target,
                     "; use a share in (0, 1], e.g. 0.9 (--attainment_target)"));
  }
  if (options.num_requests < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_requests is ", options.num_requests,
                                                   "; simulate at least one (--num_requests)"));
  }
  if (!(options.rate_precision > 0 && options.rate_precision < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("rate_precision is ", options.rate_precision,
                                                   "; use a share in (0, 1), e.g. 0.02"));
  }
  if (!(options.gpu_memory_utilization > 0 && options.gpu_memory_utilization <= 1) ||
      !(options.reserved_bytes_per_gpu >= 0)) {
    return absl::InvalidArgumentError(
        "gpu_memory_utilization must be in (0, 1] and reserved_bytes_per_gpu >= 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Request>> Workload(const model::ModelConfig& model,
                                              const SearchOptions& options, int num_requests) {
  workload::WorkloadSpec spec;
  spec.dataset = options.dataset;
  spec.rate_per_s = 1.0;
  spec.cv = options.arrival_cv;
  spec.num_requests = num_requests;
  spec.seed = options.seed;
  spec.max_total_tokens = options.max_total_tokens > 0
                              ? std::min(options.max_total_tokens, model.max_position_embeddings)
                              : model.max_position_embeddings;
  return workload::Generate(spec);
}

// Fits is the paper's memory check: the weights fit and leave room for the KV of at least one
// request of the model's whole context.
bool Fits(const model::ModelConfig& model, const InstanceConfig& config, const ClusterSpec& cluster,
          const SearchOptions& options) {
  return KvCapacityBlocks(model, config, cluster.gpu, options) >=
         BlocksFor(model.max_position_embeddings, options.simulator.block_size);
}

// PhaseConfigs lists the configurations one instance may take under Algorithm 1: intra_op
// 1..M, inter_op 1..N·M/intra_op, valid and passing the memory check.
std::vector<InstanceConfig> PhaseConfigs(const model::ModelConfig& model,
                                         const ClusterSpec& cluster, int max_nodes,
                                         const SearchOptions& options) {
  std::vector<InstanceConfig> configs;
  const int m = cluster.gpus_per_node;
  for (int tp = 1; tp <= m; ++tp) {
    for (int pp = 1; pp <= max_nodes * m / tp; ++pp) {
      const InstanceConfig config{tp, pp};
      if (Valid(model, config) && Fits(model, config, cluster, options)) configs.push_back(config);
    }
  }
  return configs;
}

Evaluation PhaseEvaluation(const model::ModelConfig& model, const InstanceConfig& config,
                           Phase phase, const ClusterSpec& cluster, const SearchOptions& options) {
  Evaluation e;
  const int64_t blocks = KvCapacityBlocks(model, config, cluster.gpu, options);
  if (phase == Phase::kPrefill) {
    e.candidate.kind = Candidate::Kind::kPrefill;
    e.candidate.prefill = config;
    e.cluster.mode = SimulationMode::kPrefillOnly;
    e.cluster.prefill = {1, config, nullptr, blocks};
  } else {
    e.candidate.kind = Candidate::Kind::kDecode;
    e.candidate.decode = config;
    e.cluster.mode = SimulationMode::kDecodeOnly;
    e.cluster.decode = {1, config, nullptr, blocks};
  }
  e.candidate.gpus = config.gpus();
  return e;
}

// SortBest orders candidates by goodput per GPU, best first; ties keep the enumeration order.
void SortBest(std::vector<Candidate>& candidates) {
  std::stable_sort(
      candidates.begin(), candidates.end(),
      [](const Candidate& a, const Candidate& b) { return a.goodput_per_gpu > b.goodput_per_gpu; });
}

std::string Rate(double rate) { return absl::StrFormat("%.3g", rate); }

// RunEvaluations evaluates, collects the simulations and returns the first error, if any.
absl::Status RunEvaluations(std::vector<Evaluation>& evaluations, const StepTimeModels& times,
                            const std::vector<Request>& requests, const SearchOptions& options,
                            Plan& plan) {
  Evaluate(evaluations, times, requests, options);
  for (const Evaluation& e : evaluations) {
    plan.simulations += e.simulations;
    if (!e.status.ok()) return e.status;
  }
  return absl::OkStatus();
}

// PackNodes places instances of the given GPU counts first-fit, largest first, on nodes of
// `gpus_per_node`; an instance larger than a node takes whole empty nodes. False if they do not
// fit.
bool PackNodes(const std::vector<std::pair<int, int>>& gpus_and_id, int nodes, int gpus_per_node,
               std::vector<InstancePlacement>* placements) {
  std::vector<int> free(nodes, gpus_per_node);
  std::vector<std::pair<int, int>> order = gpus_and_id;
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [gpus, id] : order) {
    InstancePlacement& where = (*placements)[id];
    if (gpus > gpus_per_node) {
      const int need = static_cast<int>(BlocksFor(gpus, gpus_per_node));
      int run = 0, start = -1;
      for (int n = 0; n < nodes && start < 0; ++n) {
        run = free[n] == gpus_per_node ? run + 1 : 0;
        if (run == need) start = n - need + 1;
      }
      if (start < 0) return false;
      for (int n = start; n < start + need; ++n) free[n] = 0;
      where.node = start;
      where.first_gpu = 0;
      where.gpus_per_node = gpus_per_node;
      where.nodes = need;
      continue;
    }
    int node = -1;
    for (int n = 0; n < nodes && node < 0; ++n) {
      if (free[n] >= gpus) node = n;
    }
    if (node < 0) return false;
    where.node = node;
    where.first_gpu = gpus_per_node - free[node];
    where.gpus_per_node = gpus;
    where.nodes = 1;
    free[node] -= gpus;
  }
  return true;
}

absl::Status SimulateWholePlan(const model::ModelConfig& model, const StepTimeModels& times,
                               const ClusterSpec& cluster, const SearchOptions& options,
                               Plan& plan) {
  if (!(plan.rate > 0)) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<StepTimeModel>> prefill_model =
      times.For(plan.prefill.config.tensor_parallel, plan.prefill.config.pipeline_stages);
  if (!prefill_model.ok()) return prefill_model.status();
  absl::StatusOr<std::unique_ptr<StepTimeModel>> decode_model =
      times.For(plan.decode.config.tensor_parallel, plan.decode.config.pipeline_stages);
  if (!decode_model.ok()) return decode_model.status();
  SimulatedCluster whole;
  whole.mode = SimulationMode::kDisaggregated;
  whole.prefill = {plan.prefill.instances, plan.prefill.config, prefill_model->get(),
                   plan.prefill.kv_blocks};
  whole.decode = {plan.decode.instances, plan.decode.config, decode_model->get(),
                  plan.decode.kv_blocks};
  whole.kv_bytes_per_token = static_cast<double>(KvBytesPerToken(model));
  if (plan.affinity == Affinity::kLow) {
    const int per_node_p = plan.prefill.config.gpus() / plan.inter_op_nodes;
    const int per_node_d = plan.decode.config.gpus() / plan.inter_op_nodes;
    whole.kv_transfer_bytes_per_s =
        cluster.gpu.nvlink_bytes_per_s * plan.inter_op_nodes * std::min(per_node_p, per_node_d);
  } else {
    const int m = cluster.gpus_per_node;
    whole.kv_transfer_bytes_per_s =
        cluster.cross_node_bytes_per_s *
        std::min(BlocksFor(plan.prefill.config.gpus(), m), BlocksFor(plan.decode.config.gpus(), m));
  }
  const int scale = std::max(plan.prefill.instances, plan.decode.instances);
  absl::StatusOr<std::vector<Request>> requests =
      Workload(model, options, options.num_requests * scale);
  if (!requests.ok()) return requests.status();
  absl::StatusOr<Simulator> simulator = Simulator::Create(whole, options.simulator);
  if (!simulator.ok()) return simulator.status();
  absl::StatusOr<const std::vector<workload::RequestTiming>*> timings =
      simulator->Run(*requests, 1.0 / plan.rate);
  if (!timings.ok()) return timings.status();
  ++plan.simulations;
  plan.attainment = workload::Attainment(**timings, options.slo);
  return absl::OkStatus();
}

absl::Status HighAffinity(const model::ModelConfig& model, const StepTimeModels& times,
                          const ClusterSpec& cluster, double rate, const SearchOptions& options,
                          const std::vector<Request>& requests, Plan& plan) {
  const int max_nodes = cluster.max_nodes_per_instance > 0
                            ? std::min(cluster.max_nodes_per_instance, cluster.nodes)
                            : cluster.nodes;
  const std::vector<InstanceConfig> configs = PhaseConfigs(model, cluster, max_nodes, options);
  if (configs.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        model.name, " fits no instance of up to ", max_nodes * cluster.gpus_per_node, " ",
        cluster.gpu.name, " GPUs (", max_nodes, " node(s) of ", cluster.gpus_per_node,
        "); allow more nodes per instance or use GPUs with more memory"));
  }
  std::vector<Evaluation> evaluations;
  for (Phase phase : {Phase::kPrefill, Phase::kDecode}) {
    for (const InstanceConfig& config : configs) {
      evaluations.push_back(PhaseEvaluation(model, config, phase, cluster, options));
    }
  }
  if (options.progress) {
    options.progress(absl::StrCat("Algorithm 1 (high affinity): ", configs.size(),
                                  " configurations per phase, each phase simulated alone"));
  }
  if (absl::Status s = RunEvaluations(evaluations, times, requests, options, plan); !s.ok()) {
    return s;
  }
  const Candidate* best[2] = {nullptr, nullptr};
  for (const Evaluation& e : evaluations) {
    const int phase = e.candidate.kind == Candidate::Kind::kPrefill ? 0 : 1;
    if (options.progress) {
      const InstanceConfig& c = phase == 0 ? e.candidate.prefill : e.candidate.decode;
      options.progress(
          absl::StrFormat("  %-7s %-9s %8s req/s, %8s per GPU", phase == 0 ? "prefill" : "decode",
                          c.Name(), Rate(e.candidate.goodput), Rate(e.candidate.goodput_per_gpu)));
    }
    plan.candidates.push_back(e.candidate);
  }
  SortBest(plan.candidates);
  for (const Candidate& c : plan.candidates) {
    const int phase = c.kind == Candidate::Kind::kPrefill ? 0 : 1;
    if (best[phase] == nullptr) best[phase] = &c;
  }
  for (int phase = 0; phase < 2; ++phase) {
    if (best[phase]->goodput <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("no ", phase == 0 ? "prefill" : "decode", " configuration of ", model.name,
                       " meets the ", phase == 0 ? "TTFT" : "TPOT", " SLO (",
                       phase == 0 ? options.slo.ttft_s : options.slo.tpot_s, " s) for ",
                       100 * options.attainment_target,
                       "% of requests even at a trickle; relax the SLO or the attainment"));
    }
  }
  // With a rate, Algorithm 1 as the paper: each phase's best per GPU, replicated to the rate.
  // To fill the cluster (no rate), the best pair of the two phases' candidates by the rate the
  // cluster then serves: the best of each alone may not fit beside each other.
  const Candidate* p = best[0];
  const Candidate* d = best[1];
  const auto place = [&](const Candidate& prefill, const Candidate& decode, int n, int m) {
    Plan trial;
    trial.affinity = Affinity::kHigh;
    trial.prefill = {prefill.prefill, n, 0, prefill.goodput};
    trial.decode = {decode.decode, m, 0, decode.goodput};
    return PlaceInstances(trial, cluster).ok();
  };
  // Fill adds an instance to the phase that serves less while one still fits.
  const auto fill = [&](const Candidate& prefill, const Candidate& decode, int* n, int* m) {
    *n = *m = 0;
    while (true) {
      const bool add_prefill = *n * prefill.goodput <= *m * decode.goodput;
      const int next_n = *n + (add_prefill ? 1 : 0), next_m = *m + (add_prefill ? 0 : 1);
      if (!place(prefill, decode, next_n, next_m)) break;
      *n = next_n;
      *m = next_m;
    }
    return std::min(*n * prefill.goodput, *m * decode.goodput);
  };
  int n = 0, m = 0;
  if (rate > 0) {
    n = static_cast<int>(std::ceil(rate / p->goodput));
    m = static_cast<int>(std::ceil(rate / d->goodput));
  } else {
    double best_rate = -1;
    for (const Candidate& prefill : plan.candidates) {
      if (prefill.kind != Candidate::Kind::kPrefill || prefill.goodput <= 0) continue;
      for (const Candidate& decode : plan.candidates) {
        if (decode.kind != Candidate::Kind::kDecode || decode.goodput <= 0) continue;
        int pn = 0, pm = 0;
        const double filled = fill(prefill, decode, &pn, &pm);
        if (filled > best_rate) {
          best_rate = filled;
          p = &prefill;
          d = &decode;
          n = pn;
          m = pm;
        }
      }
    }
    if (best_rate <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("the cluster (", cluster.nodes, " node(s) of ", cluster.gpus_per_node,
                       " GPUs) cannot hold a prefill and a decode instance of ", model.name,
                       " together; give it more nodes or GPUs"));
    }
    if (p != best[0] || d != best[1]) {
      plan.notes.push_back(absl::StrCat("to fill the cluster: ", p->Name(), " and ", d->Name(),
                                        " (the best per GPU, ", best[0]->Name(), " and ",
                                        best[1]->Name(), ", do not fill it as well)"));
    }
  }
  plan.inter_op_nodes = 0;
  plan.prefill = {p->prefill, n, KvCapacityBlocks(model, p->prefill, cluster.gpu, options),
                  p->goodput};
  plan.decode = {d->decode, m, KvCapacityBlocks(model, d->decode, cluster.gpu, options),
                 d->goodput};
  plan.goodput_per_gpu = 1.0 / (p->gpus / p->goodput + d->gpus / d->goodput);
  plan.rate = rate > 0 ? rate : std::min(n * p->goodput, m * d->goodput);
  return absl::OkStatus();
}

absl::Status LowAffinity(const model::ModelConfig& model, const StepTimeModels& times,
                         const ClusterSpec& cluster, double rate, const SearchOptions& options,
                         const std::vector<Request>& requests, Plan& plan) {
  const int m = cluster.gpus_per_node;
  const int max_nodes = cluster.max_nodes_per_instance > 0
                            ? std::min(cluster.max_nodes_per_instance, cluster.nodes)
                            : cluster.nodes;
  const double kv_bytes = static_cast<double>(KvBytesPerToken(model));
  if (options.progress) {
    options.progress(absl::StrCat(
        "Algorithm 2 (low affinity): for each inter-op degree across nodes, prefill and decode "
        "configurations sharing each node, simulated jointly"));
  }
  const Candidate* best = nullptr;
  std::vector<Evaluation> all;
  all.reserve(1024);
  for (int inter_op = 1; inter_op <= max_nodes; ++inter_op) {
    // The intra-node configurations: tp x (stages per node), the stages of all nodes together
    // dividing the layers, the whole instance passing the memory check.
    std::vector<InstanceConfig> local;
    for (int tp = 1; tp < m; ++tp) {
      for (int stages = 1; tp * stages < m; ++stages) {
        const InstanceConfig whole{tp, stages * inter_op};
        if (Valid(model, whole) && Fits(model, whole, cluster, options)) {
          local.push_back({tp, stages});
        }
      }
    }
    std::vector<Evaluation> level;
    for (const InstanceConfig& p : local) {
      for (const InstanceConfig& d : local) {
        if (p.gpus() + d.gpus() > m) continue;
        Evaluation e;
        const InstanceConfig prefill{p.tensor_parallel, p.pipeline_stages * inter_op};
        const InstanceConfig decode{d.tensor_parallel, d.pipeline_stages * inter_op};
        e.candidate.kind = Candidate::Kind::kPair;
        e.candidate.prefill = prefill;
        e.candidate.decode = decode;
        e.candidate.inter_op_nodes = inter_op;
        e.candidate.gpus = prefill.gpus() + decode.gpus();
        e.cluster.mode = SimulationMode::kDisaggregated;
        e.cluster.prefill = {1, prefill, nullptr,
                             KvCapacityBlocks(model, prefill, cluster.gpu, options)};
        e.cluster.decode = {1, decode, nullptr,
                            KvCapacityBlocks(model, decode, cluster.gpu, options)};
        // Each node moves its stages' share of the KV over NVLink, GPU pair by GPU pair.
        e.cluster.kv_bytes_per_token = kv_bytes;
        e.cluster.kv_transfer_bytes_per_s =
            cluster.gpu.nvlink_bytes_per_s * inter_op * std::min(p.gpus(), d.gpus());
        level.push_back(e);
      }
    }
    if (absl::Status s = RunEvaluations(level, times, requests, options, plan); !s.ok()) return s;
    const Evaluation* level_best = nullptr;
    for (const Evaluation& e : level) {
      if (level_best == nullptr ||
          e.candidate.goodput_per_gpu > level_best->candidate.goodput_per_gpu) {
        level_best = &e;
      }
    }
    if (options.progress) {
      options.progress(level_best == nullptr
                           ? absl::StrCat("  inter-op ", inter_op, ": no configuration fits")
                           : absl::StrFormat("  inter-op %d: %3d pairs, best %-28s %8s req/s, %8s "
                                             "per GPU",
                                             inter_op, level.size(), level_best->candidate.Name(),
                                             Rate(level_best->candidate.goodput),
                                             Rate(level_best->candidate.goodput_per_gpu)));
    }
    for (Evaluation& e : level) all.push_back(std::move(e));
  }
  for (const Evaluation& e : all) {
    plan.candidates.push_back(e.candidate);
    if (best == nullptr || e.candidate.goodput_per_gpu > best->goodput_per_gpu) best = &e.candidate;
  }
  SortBest(plan.candidates);
  if (best == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(model.name, " fits no prefill/decode pair on nodes of ", m, " ",
                     cluster.gpu.name, " GPUs spanning up to ", max_nodes,
                     " node(s); allow more nodes per instance, use "
                     "Algorithm 1 (--affinity high), or GPUs with more memory"));
  }
  if (best->goodput <= 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no prefill/decode pair of ", model.name, " meets the SLO (TTFT ", options.slo.ttft_s,
        " s, TPOT ", options.slo.tpot_s, " s) for ", 100 * options.attainment_target,
        "% of requests even at a trickle; relax the SLO or the attainment"));
  }
  plan.inter_op_nodes = best->inter_op_nodes;
  plan.prefill = {best->prefill, 0, KvCapacityBlocks(model, best->prefill, cluster.gpu, options),
                  best->goodput};
  plan.decode = {best->decode, 0, KvCapacityBlocks(model, best->decode, cluster.gpu, options),
                 best->goodput};
  plan.goodput_per_gpu = best->goodput_per_gpu;
  const int per_node = best->gpus / best->inter_op_nodes;
  const int capacity = (cluster.nodes / best->inter_op_nodes) * (m / per_node);
  const int pairs = rate > 0 ? static_cast<int>(std::ceil(rate / best->goodput)) : capacity;
  plan.prefill.instances = pairs;
  plan.decode.instances = pairs;
  plan.rate = rate > 0 ? rate : pairs * best->goodput;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<workload::Slo> PaperSlo(std::string_view model, workload::Dataset dataset) {
  struct Entry {
    const char* model;
    workload::Dataset dataset;
    workload::Slo slo;
  };
  static const Entry kTable[] = {
      {"opt-13b", workload::Dataset::kChatbot, {0.25, 0.1}},
      {"opt-66b", workload::Dataset::kChatbot, {2.5, 0.15}},
      {"opt-175b", workload::Dataset::kChatbot, {4.0, 0.2}},
      {"opt-66b", workload::Dataset::kCode, {0.125, 0.2}},
      {"opt-66b", workload::Dataset::kSummarization, {15.0, 0.15}},
  };
  for (const Entry& e : kTable) {
    if (model == e.model && dataset == e.dataset) return e.slo;
  }
  return absl::NotFoundError(absl::StrCat(
      "DistServe gives no SLO for ", std::string(model), " on ", workload::DatasetName(dataset),
      " (it has chatbot for opt-13b, opt-66b and opt-175b, code and summarization for opt-66b); "
      "give one with --ttft_s and --tpot_s"));
}

absl::StatusOr<Affinity> ParseAffinity(std::string_view name) {
  if (name == "high") return Affinity::kHigh;
  if (name == "low") return Affinity::kLow;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown affinity \"", std::string(name),
      "\"; use high (fast links between nodes: Algorithm 1) or low (DistServe's 25 Gbps testbed: "
      "Algorithm 2)"));
}

const char* AffinityName(Affinity affinity) { return affinity == Affinity::kHigh ? "high" : "low"; }

std::string Candidate::Name() const {
  switch (kind) {
    case Kind::kPrefill:
      return absl::StrCat("prefill ", prefill.Name());
    case Kind::kDecode:
      return absl::StrCat("decode ", decode.Name());
    case Kind::kPair:
      return absl::StrCat("prefill ", prefill.Name(), " | decode ", decode.Name());
    case Kind::kColocated:
      return absl::StrCat("colocated ", prefill.Name());
  }
  return "";
}

int64_t KvCapacityBlocks(const model::ModelConfig& model, const InstanceConfig& config,
                         const GpuSpec& gpu, const SearchOptions& options) {
  const double usable = config.gpus() * (options.gpu_memory_utilization * gpu.memory_bytes -
                                         options.reserved_bytes_per_gpu);
  const double weights =
      static_cast<double>(model::ParameterCount(model)) * gpu::SizeOf(gpu::DType::kFloat16);
  const double block = static_cast<double>(KvBytesPerToken(model)) * options.simulator.block_size;
  if (usable <= weights || block <= 0) return 0;
  return static_cast<int64_t>((usable - weights) / block);
}

absl::StatusOr<GoodputResult> MaxGoodput(Simulator& simulator, const std::vector<Request>& requests,
                                         const workload::Slo& slo, double attainment_target,
                                         double rate_precision) {
  if (requests.empty()) {
    return absl::InvalidArgumentError(
        "MaxGoodput needs requests; draw some (workload.h: Generate)");
  }
  GoodputResult result;
  // Requests alone are the best any rate can do: under the target there, no rate reaches it.
  absl::StatusOr<const std::vector<workload::RequestTiming>*> alone = simulator.RunAlone(requests);
  if (!alone.ok()) return alone.status();
  if (workload::Attainment(**alone, slo) < attainment_target) return result;
  absl::StatusOr<double> saturated = SaturatedThroughput(simulator, requests);
  if (!saturated.ok()) return saturated.status();
  ++result.simulations;
  result.saturated_rate = *saturated;
  if (!(*saturated > 0)) return result;
  absl::Status error;
  const auto attains = [&](double rate) {
    ++result.simulations;
    absl::StatusOr<const std::vector<workload::RequestTiming>*> timings =
        simulator.Run(requests, 1.0 / rate);
    if (!timings.ok()) {
      error = timings.status();
      return false;
    }
    return workload::Attainment(**timings, slo) >= attainment_target;
  };
  // Bracket below the saturated throughput, the most any rate can sustain.
  double high = *saturated, low = 0;
  if (attains(high)) {
    result.rate = high;
    return result;
  }
  for (int i = 0; i < kMaxHalvings && low == 0 && error.ok(); ++i) {
    const double rate = high / 2;
    if (attains(rate)) {
      low = rate;
    } else {
      high = rate;
    }
  }
  if (!error.ok()) return error;
  if (low == 0) return result;  // only at a trickle
  while (high - low > rate_precision * low) {
    const double mid = (low + high) / 2;
    if (attains(mid)) {
      low = mid;
    } else {
      high = mid;
    }
    if (!error.ok()) return error;
  }
  result.rate = low;
  return result;
}

absl::StatusOr<std::vector<InstancePlacement>> PlaceInstances(const Plan& plan,
                                                              const ClusterSpec& cluster) {
  const int m = cluster.gpus_per_node;
  std::vector<InstancePlacement> placements;
  for (int i = 0; i < plan.prefill.instances; ++i) placements.push_back({Phase::kPrefill, i});
  for (int i = 0; i < plan.decode.instances; ++i) placements.push_back({Phase::kDecode, i});
  const int needed = plan.prefill.instances * plan.prefill.config.gpus() +
                     plan.decode.instances * plan.decode.config.gpus();
  const auto too_big = [&] {
    return absl::FailedPreconditionError(absl::StrCat(
        "the plan's ", plan.prefill.instances, " prefill (", plan.prefill.config.Name(), ") and ",
        plan.decode.instances, " decode (", plan.decode.config.Name(), ") instances need ", needed,
        " GPUs",
        plan.inter_op_nodes > 0 ? absl::StrCat(" in groups of ", plan.inter_op_nodes, " node(s)")
                                : "",
        "; the cluster has ", cluster.nodes, " node(s) of ", m,
        " GPUs; plan for a lower --rate or give it more nodes"));
  };
  if (plan.inter_op_nodes > 0) {
    if (plan.prefill.instances != plan.decode.instances) {
      return absl::InvalidArgumentError(
          "an Algorithm 2 plan pairs prefill and decode instances one to one");
    }
    const int per_node_p = plan.prefill.config.gpus() / plan.inter_op_nodes;
    const int per_node_d = plan.decode.config.gpus() / plan.inter_op_nodes;
    const int pairs_per_group = m / std::max(1, per_node_p + per_node_d);
    const int groups = cluster.nodes / plan.inter_op_nodes;
    if (plan.prefill.instances > pairs_per_group * groups) return too_big();
    for (int i = 0; i < plan.prefill.instances; ++i) {
      const int group = i / pairs_per_group, slot = i % pairs_per_group;
      const int first = slot * (per_node_p + per_node_d);
      placements[i] = {Phase::kPrefill, i,          group * plan.inter_op_nodes,
                       first,           per_node_p, plan.inter_op_nodes};
      placements[plan.prefill.instances + i] = {
          Phase::kDecode,     i,          group * plan.inter_op_nodes,
          first + per_node_p, per_node_d, plan.inter_op_nodes};
    }
    return placements;
  }
  std::vector<std::pair<int, int>> sizes;
  for (size_t i = 0; i < placements.size(); ++i) {
    sizes.push_back({placements[i].phase == Phase::kPrefill ? plan.prefill.config.gpus()
                                                            : plan.decode.config.gpus(),
                     static_cast<int>(i)});
  }
  if (!PackNodes(sizes, cluster.nodes, m, &placements)) return too_big();
  return placements;
}

absl::StatusOr<Plan> PlanPlacement(const model::ModelConfig& model, const StepTimeModels& times,
                                   const ClusterSpec& cluster, Affinity affinity, double rate,
                                   const SearchOptions& options) {
  if (absl::Status s = CheckInputs(model, cluster, rate, options); !s.ok()) return s;
  absl::StatusOr<std::vector<Request>> requests = Workload(model, options, options.num_requests);
  if (!requests.ok()) return requests.status();
  Plan plan;
  plan.affinity = affinity;
  for (const Request& r : *requests) {
    plan.mean_input_tokens += r.input_tokens;
    plan.mean_output_tokens += r.output_tokens;
  }
  plan.mean_input_tokens /= requests->size();
  plan.mean_output_tokens /= requests->size();
  absl::Status searched = affinity == Affinity::kHigh
                              ? HighAffinity(model, times, cluster, rate, options, *requests, plan)
                              : LowAffinity(model, times, cluster, rate, options, *requests, plan);
  if (!searched.ok()) return searched;
  plan.gpus = plan.prefill.instances * plan.prefill.config.gpus() +
              plan.decode.instances * plan.decode.config.gpus();
  absl::StatusOr<std::vector<InstancePlacement>> placed = PlaceInstances(plan, cluster);
  plan.fits_cluster = placed.ok();
  if (!placed.ok()) plan.notes.push_back(std::string(placed.status().message()));
  if (absl::Status s = SimulateWholePlan(model, times, cluster, options, plan); !s.ok()) return s;
  if (plan.rate > 0 && plan.attainment < options.attainment_target) {
    plan.notes.push_back(absl::StrFormat(
        "simulated whole at %.3g req/s the plan attains %.1f%%, under the %.0f%% target%s",
        plan.rate, 100 * plan.attainment, 100 * options.attainment_target,
        affinity == Affinity::kHigh
            ? " (Algorithm 1 sizes each phase for the target alone; the joint attainment can "
              "fall below it)"
            : ""));
  }
  return plan;
}

absl::StatusOr<std::vector<Candidate>> SearchColocated(const model::ModelConfig& model,
                                                       const StepTimeModels& times,
                                                       const ClusterSpec& cluster,
                                                       const SearchOptions& options) {
  if (absl::Status s = CheckInputs(model, cluster, 0, options); !s.ok()) return s;
  absl::StatusOr<std::vector<Request>> requests = Workload(model, options, options.num_requests);
  if (!requests.ok()) return requests.status();
  const int max_nodes = cluster.max_nodes_per_instance > 0
                            ? std::min(cluster.max_nodes_per_instance, cluster.nodes)
                            : cluster.nodes;
  std::vector<Evaluation> evaluations;
  for (const InstanceConfig& config : PhaseConfigs(model, cluster, max_nodes, options)) {
    Evaluation e;
    e.candidate.kind = Candidate::Kind::kColocated;
    e.candidate.prefill = config;
    e.candidate.gpus = config.gpus();
    e.cluster.mode = SimulationMode::kColocated;
    e.cluster.prefill = {1, config, nullptr, KvCapacityBlocks(model, config, cluster.gpu, options)};
    evaluations.push_back(e);
  }
  if (evaluations.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(model.name, " fits no colocated instance of up to ",
                     max_nodes * cluster.gpus_per_node, " ", cluster.gpu.name, " GPUs"));
  }
  Plan unused;
  if (absl::Status s = RunEvaluations(evaluations, times, *requests, options, unused); !s.ok()) {
    return s;
  }
  std::vector<Candidate> candidates;
  for (const Evaluation& e : evaluations) candidates.push_back(e.candidate);
  SortBest(candidates);
  return candidates;
}

}  // namespace troupe::serving::placement
