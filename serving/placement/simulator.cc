#include "serving/placement/simulator.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace troupe::serving::placement {
namespace {

using workload::Request;
using workload::RequestTiming;

enum class EventType : uint8_t {
  kPrefillForm,        // a prefill instance's first stage is free: form a batch
  kPrefillDone,        // a prefill batch left its last stage
  kTransferDone,       // a request's KV has arrived at its decode instance
  kDecodeStepDone,     // a decode instance's step ended
  kColocatedStepDone,  // a colocated instance's step ended
  kDecodeWake,         // a decode instance may start a step
  kColocatedWake,      // a colocated instance may start a step
};

struct Event {
  double time = 0;
  int64_t seq = 0;  // ties in time go in the order the events were made: deterministic
  EventType type = EventType::kPrefillForm;
  int instance = 0;
  int a = 0;  // kPrefillDone: the batch's first queue entry; kTransferDone: the request
  int b = 0;  // kPrefillDone: one past the batch's last queue entry
};

struct Later {
  bool operator()(const Event& x, const Event& y) const {
    return x.time > y.time || (x.time == y.time && x.seq > y.seq);
  }
};

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

absl::Status CheckPhase(const PhaseSetup& phase, const char* name) {
  const std::string field = absl::StrCat("SimulatedCluster.", name);
  if (phase.instances < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".instances is ", phase.instances, "; give the phase at least one"));
  }
  if (phase.model == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".model is unset; give it a StepTimeModel (latency_model.h: For(tp, pp))"));
  }
  if (phase.config.tensor_parallel < 1 || phase.config.pipeline_stages < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".config is ", phase.config.Name(), "; both degrees must be >= 1"));
  }
  if (phase.kv_blocks < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".kv_blocks is ", phase.kv_blocks,
                     "; an instance needs KV blocks (the GPUs' memory left after the weights)"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string InstanceConfig::Name() const {
  if (pipeline_stages == 1) return absl::StrCat("TP", tensor_parallel);
  if (tensor_parallel == 1) return absl::StrCat("PP", pipeline_stages);
  return absl::StrCat("TP", tensor_parallel, "\u00b7PP", pipeline_stages);
}

struct Simulator::State {
  struct Req {
    double arrival = 0;
    double first = 0;
    double last = 0;
    int input = 0;
    int output = 0;
    int generated = 0;   // tokens out so far (the first comes from the prefill)
    int prefilled = 0;   // colocated: prompt tokens processed so far
    int64_t blocks = 0;  // blocks held on its decode or colocated instance
    int64_t prefill_blocks = 0;
    int prefill_instance = 0;
    bool done = false;
    bool failed = false;
  };

  struct Prefill {
    std::vector<int> queue;  // every request routed here, in order; [head, end) wait
    size_t head = 0;
    std::vector<double> stage_free;  // when each pipeline stage is next free
    bool form_pending = false;
    int64_t used_blocks = 0;  // blocks of batches in flight and of prompts not yet pulled
    int in_flight = 0;        // routed here and not yet handed to a decode instance
  };

  struct Decode {
    std::vector<int> waiting;  // handed over, not yet pulled; [head, end) wait
    size_t head = 0;
    std::vector<int> swapped;  // preempted; [swapped_head, end) wait, first back
    size_t swapped_head = 0;
    std::vector<int> ready;    // KV in place, joining at the next step
    std::vector<int> running;  // in admission order: the newest last
    int64_t context_sum = 0;   // Σ (input + generated) over running
    int64_t free_blocks = 0;
    int pulling = 0;
    int64_t pulling_blocks = 0;
    double link_free = 0;
    bool stepping = false;
    bool wake_pending = false;
    int load = 0;  // handed here and not finished
  };

  struct Colocated {
    std::vector<int> waiting;  // [head, end) not fully prefilled; the head may be part-way
    size_t head = 0;
    std::vector<int> swapped;
    size_t swapped_head = 0;
    std::vector<int> running;
    std::vector<std::pair<int, int>> prefilling;  // this step's (request, prompt tokens)
    int64_t context_sum = 0;
    int64_t free_blocks = 0;
    bool stepping = false;
    bool wake_pending = false;
    int load = 0;
  };

  SimulatedCluster cluster;
  SimulatorOptions options;
  SimulationStats stats;
  std::vector<RequestTiming> timings;
  std::vector<Req> reqs;
  std::vector<Prefill> prefills;
  std::vector<Decode> decodes;
  std::vector<Colocated> colocateds;
  std::vector<Event> heap;
  int64_t seq = 0;

  void Push(double time, EventType type, int instance, int a = 0, int b = 0) {
    heap.push_back({time, seq++, type, instance, a, b});
    std::push_heap(heap.begin(), heap.end(), Later());
  }

  int64_t Blocks(int64_t tokens) const { return CeilDiv(tokens, options.block_size); }

  void Finish(Req& r, double now) {
    r.last = now;
    r.done = true;
  }

  // DecodeStepSeconds is one token for every running sequence: with pp > 1, the batch splits
  // into pp micro-batches that follow each other through the stages, so a sequence's next token
  // comes pp stage-times later: T(B/pp) + pp·overhead.
  double DecodeStepSeconds(const PhaseSetup& phase, int batch, int64_t context_sum) const {
    const int pp = phase.config.pipeline_stages;
    if (pp == 1) return phase.model->DecodeSeconds(batch, context_sum);
    const int micro = static_cast<int>(CeilDiv(batch, pp));
    return phase.model->DecodeSeconds(micro, context_sum * micro / batch) +
           pp * options.pipeline_stage_overhead_s;
  }

  // ---- prefill instances ----

  // ScheduleForm has the instance form a batch once its first stage is free, after everything
  // else of that instant (so that simultaneous arrivals share a batch).
  void ScheduleForm(int p, double now) {
    Prefill& instance = prefills[p];
    if (instance.form_pending || instance.head == instance.queue.size()) return;
    Push(std::max(now, instance.stage_free[0]), EventType::kPrefillForm, p);
    instance.form_pending = true;
  }

  void FormPrefill(int p, double now) {
    Prefill& instance = prefills[p];
    instance.form_pending = false;
    if (instance.head == instance.queue.size()) return;
    const size_t begin = instance.head;
    size_t end = begin;
    int64_t tokens = 0, tokens_squared = 0, blocks = 0;
    int count = 0;
    while (end < instance.queue.size() && count < options.prefill_max_batch_requests) {
      Req& r = reqs[instance.queue[end]];
      if (count > 0 && tokens + r.input > options.prefill_max_batch_tokens) break;
      const int64_t need = Blocks(r.input);
      if (instance.used_blocks + blocks + need > cluster.prefill.kv_blocks) break;
      tokens += r.input;
      tokens_squared += static_cast<int64_t>(r.input) * r.input;
      blocks += need;
      r.prefill_blocks = need;
      ++count;
      ++end;
    }
    if (count == 0) return;  // the head waits for blocks, freed when the decode side pulls
    instance.head = end;
    instance.used_blocks += blocks;
    const int pp = cluster.prefill.config.pipeline_stages;
    const double whole = cluster.prefill.model->PrefillSeconds(count, tokens, tokens_squared);
    const double stage = pp > 1 ? whole / pp + options.pipeline_stage_overhead_s : whole;
    double t = now;
    for (int s = 0; s < pp; ++s) {
      t = std::max(t, instance.stage_free[s]) + stage;
      instance.stage_free[s] = t;
    }
    Push(t, EventType::kPrefillDone, p, static_cast<int>(begin), static_cast<int>(end));
    ++stats.prefill_batches;
    stats.prefill_tokens += tokens;
    ScheduleForm(p, now);
  }

  void PrefillDone(int p, int begin, int end, double now) {
    Prefill& instance = prefills[p];
    bool freed = false;
    for (int k = begin; k < end; ++k) {
      const int id = instance.queue[k];
      Req& r = reqs[id];
      r.first = now;
      r.generated = 1;
      --instance.in_flight;
      if (cluster.mode == SimulationMode::kPrefillOnly || r.output == 1) {
        instance.used_blocks -= r.prefill_blocks;
        freed = true;
        Finish(r, now);
        continue;
      }
      r.prefill_instance = p;
      const int d = LeastLoadedDecode();
      decodes[d].waiting.push_back(id);
      ++decodes[d].load;
      TryAdmitDecode(d, now);
    }
    if (freed) ScheduleForm(p, now);
  }

  // ---- decode instances ----

  int LeastLoadedDecode() const {
    int best = 0;
    for (int d = 1; d < static_cast<int>(decodes.size()); ++d) {
      if (decodes[d].load < decodes[best].load) best = d;
    }
    return best;
  }

  void TryAdmitDecode(int d, double now) {
    Decode& instance = decodes[d];
    while (instance.swapped_head < instance.swapped.size()) {
      const int id = instance.swapped[instance.swapped_head];
      Req& r = reqs[id];
      const int64_t need = Blocks(r.input + r.generated);
      if (instance.free_blocks < need) return;
      instance.free_blocks -= need;
      r.blocks = need;
      instance.ready.push_back(id);
      ++instance.swapped_head;
      WakeDecode(d, now);
    }
    const double pull_limit = options.decode_pull_share * cluster.decode.kv_blocks;
    while (instance.head < instance.waiting.size()) {
      const int id = instance.waiting[instance.head];
      Req& r = reqs[id];
      const int64_t need = Blocks(r.input);
      if (instance.free_blocks < need) return;
      if (instance.pulling > 0 && instance.pulling_blocks + need > pull_limit) return;
      if (static_cast<int>(instance.running.size() + instance.ready.size()) + instance.pulling >=
          options.decode_max_batch_requests) {
        return;
      }
      instance.free_blocks -= need;
      r.blocks = need;
      ++instance.head;
      if (cluster.mode == SimulationMode::kDecodeOnly) {
        instance.ready.push_back(id);
        WakeDecode(d, now);
        continue;
      }
      ++instance.pulling;
      instance.pulling_blocks += need;
      const double seconds =
          cluster.kv_transfer_bytes_per_s > 0
              ? cluster.kv_bytes_per_token * r.input / cluster.kv_transfer_bytes_per_s
              : 0.0;
      const double start = std::max(now, instance.link_free);
      instance.link_free = start + seconds;
      stats.transfer_s += seconds;
      Push(instance.link_free, EventType::kTransferDone, d, id);
    }
  }

  void TransferDone(int d, int id, double now) {
    Decode& instance = decodes[d];
    Req& r = reqs[id];
    --instance.pulling;
    instance.pulling_blocks -= r.blocks;
    instance.ready.push_back(id);
    // Only now does the prefill instance free the prompt's blocks (DistServe's pull protocol).
    prefills[r.prefill_instance].used_blocks -= r.prefill_blocks;
    ScheduleForm(r.prefill_instance, now);
    TryAdmitDecode(d, now);
    WakeDecode(d, now);
  }

  // EnsureBlocks gives every running sequence the blocks its next token needs, preempting the
  // newest running sequence (swapped out; back first) while none is free.
  template <typename Instance>
  void EnsureBlocks(Instance& instance) {
    size_t i = 0;
    while (i < instance.running.size()) {
      const int id = instance.running[i];
      Req& r = reqs[id];
      const int64_t need = Blocks(r.input + r.generated);
      bool preempted_self = false;
      while (r.blocks < need) {
        if (instance.free_blocks > 0) {
          const int64_t take = std::min(instance.free_blocks, need - r.blocks);
          instance.free_blocks -= take;
          r.blocks += take;
          continue;
        }
        const int victim = instance.running.back();
        Req& v = reqs[victim];
        instance.running.pop_back();
        instance.context_sum -= v.input + v.generated;
        instance.free_blocks += v.blocks;
        v.blocks = 0;
        instance.swapped.push_back(victim);
        ++stats.preemptions;
        if (victim == id) {
          preempted_self = true;
          break;
        }
      }
      if (!preempted_self) ++i;
    }
  }

  // WakeDecode has the instance start a step after everything else of this instant (so that
  // requests ready at the same time share it).
  void WakeDecode(int d, double now) {
    Decode& instance = decodes[d];
    if (instance.stepping || instance.wake_pending) return;
    Push(now, EventType::kDecodeWake, d);
    instance.wake_pending = true;
  }

  void MaybeStepDecode(int d, double now) {
    Decode& instance = decodes[d];
    instance.wake_pending = false;
    if (instance.stepping || (instance.running.empty() && instance.ready.empty())) return;
    for (int id : instance.ready) {
      instance.running.push_back(id);
      instance.context_sum += reqs[id].input + reqs[id].generated;
    }
    instance.ready.clear();
    EnsureBlocks(instance);
    if (instance.running.empty()) return;
    const int batch = static_cast<int>(instance.running.size());
    instance.stepping = true;
    ++stats.decode_steps;
    stats.decode_tokens += batch;
    Push(now + DecodeStepSeconds(cluster.decode, batch, instance.context_sum),
         EventType::kDecodeStepDone, d);
  }

  // AdvanceRunning gives every running sequence its token, finishes those that are done and
  // returns their blocks.
  template <typename Instance>
  void AdvanceRunning(Instance& instance, double now) {
    size_t kept = 0;
    int64_t context_sum = 0;
    for (int id : instance.running) {
      Req& r = reqs[id];
      ++r.generated;
      if (r.generated >= r.output) {
        Finish(r, now);
        instance.free_blocks += r.blocks;
        r.blocks = 0;
        --instance.load;
      } else {
        instance.running[kept++] = id;
        context_sum += r.input + r.generated;
      }
    }
    instance.running.resize(kept);
    instance.context_sum = context_sum;
  }

  void DecodeStepDone(int d, double now) {
    Decode& instance = decodes[d];
    instance.stepping = false;
    AdvanceRunning(instance, now);
    TryAdmitDecode(d, now);
    WakeDecode(d, now);
  }

  // ---- colocated instances ----

  void WakeColocated(int c, double now) {
    Colocated& instance = colocateds[c];
    if (instance.stepping || instance.wake_pending) return;
    Push(now, EventType::kColocatedWake, c);
    instance.wake_pending = true;
  }

  void MaybeStepColocated(int c, double now) {
    Colocated& instance = colocateds[c];
    instance.wake_pending = false;
    if (instance.stepping) return;
    while (instance.swapped_head < instance.swapped.size()) {
      const int id = instance.swapped[instance.swapped_head];
      Req& r = reqs[id];
      const int64_t need = Blocks(r.input + r.generated);
      if (instance.free_blocks < need) break;
      instance.free_blocks -= need;
      r.blocks = need;
      instance.running.push_back(id);
      instance.context_sum += r.input + r.generated;
      ++instance.swapped_head;
    }
    EnsureBlocks(instance);
    const int batch = static_cast<int>(instance.running.size());
    instance.prefilling.clear();
    int64_t tokens = 0, tokens_squared = 0;
    // Swapped-out sequences come back before new prompts start, unless nothing runs (the
    // blocks they wait for are then held by a prompt part-way through its chunks).
    if (instance.swapped_head == instance.swapped.size() || batch == 0) {
      const bool chunked = options.chunked_prefill;
      int64_t budget = options.colocated_max_batch_tokens - (chunked ? batch : 0);
      size_t i = instance.head;
      while (i < instance.waiting.size() && budget > 0 &&
             batch + static_cast<int>(instance.prefilling.size()) <
                 options.colocated_max_batch_requests) {
        const int id = instance.waiting[i];
        Req& r = reqs[id];
        const int remaining = r.input - r.prefilled;
        if (!chunked && !instance.prefilling.empty() && remaining > budget) break;
        if (r.prefilled == 0) {
          const int64_t need = Blocks(r.input);
          if (instance.free_blocks < need) break;
          instance.free_blocks -= need;
          r.blocks = need;
        }
        const int chunk =
            chunked ? static_cast<int>(std::min<int64_t>(remaining, budget)) : remaining;
        instance.prefilling.push_back({id, chunk});
        tokens += chunk;
        // A chunk's queries attend to everything before them too: (p + c)² - p² of t₂, so a
        // prompt's chunks add up to its l².
        tokens_squared += static_cast<int64_t>(chunk) * (2 * r.prefilled + chunk);
        budget -= chunk;
        if (chunk < remaining) break;  // part-way: it stays at the head
        ++i;
      }
      instance.head = i;
    }
    if (instance.prefilling.empty() && batch == 0) return;
    const PhaseSetup& phase = cluster.prefill;
    double seconds = 0;
    if (!instance.prefilling.empty()) {
      // One forward pass, as the engine runs a mixed step: the prompts' tokens and one token
      // per running sequence go through the layers together (the weights are read once), the
      // prefill model's cost of them all; the running sequences' attention over their
      // contexts is the decode model's context term on top.
      const int prompts = static_cast<int>(instance.prefilling.size());
      seconds +=
          phase.model->PrefillSeconds(prompts + batch, tokens + batch, tokens_squared + batch);
      if (batch > 0) {
        seconds += std::max(0.0, phase.model->DecodeSeconds(batch, instance.context_sum) -
                                     phase.model->DecodeSeconds(batch, 0));
        ++stats.decode_steps;
        stats.decode_tokens += batch;
      }
      if (phase.config.pipeline_stages > 1) {
        seconds += phase.config.pipeline_stages * options.pipeline_stage_overhead_s;
      }
      ++stats.prefill_batches;
      stats.prefill_tokens += tokens;
    } else {
      seconds += DecodeStepSeconds(phase, batch, instance.context_sum);
      ++stats.decode_steps;
      stats.decode_tokens += batch;
    }
    instance.stepping = true;
    Push(now + seconds, EventType::kColocatedStepDone, c);
  }

  void ColocatedStepDone(int c, double now) {
    Colocated& instance = colocateds[c];
    instance.stepping = false;
    AdvanceRunning(instance, now);
    for (const auto& [id, chunk] : instance.prefilling) {
      Req& r = reqs[id];
      r.prefilled += chunk;
      if (r.prefilled < r.input) continue;
      r.first = now;
      r.generated = 1;
      if (r.output == 1) {
        Finish(r, now);
        instance.free_blocks += r.blocks;
        r.blocks = 0;
        --instance.load;
      } else {
        instance.running.push_back(id);
        instance.context_sum += r.input + r.generated;
      }
    }
    instance.prefilling.clear();
    WakeColocated(c, now);
  }

  // ---- arrivals and the loop ----

  // Fits is whether the request's KV fits the caches it needs, however empty.
  bool Fits(const Req& r) const {
    const int64_t whole = Blocks(static_cast<int64_t>(r.input) + r.output);
    switch (cluster.mode) {
      case SimulationMode::kDisaggregated:
        return Blocks(r.input) <= cluster.prefill.kv_blocks && whole <= cluster.decode.kv_blocks;
      case SimulationMode::kPrefillOnly:
        return Blocks(r.input) <= cluster.prefill.kv_blocks;
      case SimulationMode::kDecodeOnly:
        return whole <= cluster.decode.kv_blocks;
      case SimulationMode::kColocated:
        return whole <= cluster.prefill.kv_blocks;
    }
    return false;
  }

  void Arrive(int id, double now) {
    Req& r = reqs[id];
    if (!Fits(r)) {
      r.failed = true;
      ++stats.failed;
      return;
    }
    switch (cluster.mode) {
      case SimulationMode::kDisaggregated:
      case SimulationMode::kPrefillOnly: {
        int best = 0;
        for (int p = 1; p < static_cast<int>(prefills.size()); ++p) {
          if (prefills[p].in_flight < prefills[best].in_flight) best = p;
        }
        prefills[best].queue.push_back(id);
        ++prefills[best].in_flight;
        ScheduleForm(best, now);
        return;
      }
      case SimulationMode::kDecodeOnly: {
        r.first = now;
        r.generated = 1;
        if (r.output == 1) {
          Finish(r, now);
          return;
        }
        const int d = LeastLoadedDecode();
        decodes[d].waiting.push_back(id);
        ++decodes[d].load;
        TryAdmitDecode(d, now);
        return;
      }
      case SimulationMode::kColocated: {
        int best = 0;
        for (int c = 1; c < static_cast<int>(colocateds.size()); ++c) {
          if (colocateds[c].load < colocateds[best].load) best = c;
        }
        colocateds[best].waiting.push_back(id);
        ++colocateds[best].load;
        WakeColocated(best, now);
        return;
      }
    }
  }

  void Handle(const Event& e) {
    switch (e.type) {
      case EventType::kPrefillForm:
        FormPrefill(e.instance, e.time);
        return;
      case EventType::kPrefillDone:
        PrefillDone(e.instance, e.a, e.b, e.time);
        return;
      case EventType::kTransferDone:
        TransferDone(e.instance, e.a, e.time);
        return;
      case EventType::kDecodeStepDone:
        DecodeStepDone(e.instance, e.time);
        return;
      case EventType::kColocatedStepDone:
        ColocatedStepDone(e.instance, e.time);
        return;
      case EventType::kDecodeWake:
        MaybeStepDecode(e.instance, e.time);
        return;
      case EventType::kColocatedWake:
        MaybeStepColocated(e.instance, e.time);
        return;
    }
  }

  void Reset(size_t n) {
    stats = {};
    heap.clear();
    seq = 0;
    reqs.assign(n, Req{});
    const bool has_prefill = cluster.mode == SimulationMode::kDisaggregated ||
                             cluster.mode == SimulationMode::kPrefillOnly;
    const bool has_decode = cluster.mode == SimulationMode::kDisaggregated ||
                            cluster.mode == SimulationMode::kDecodeOnly;
    prefills.resize(has_prefill ? cluster.prefill.instances : 0);
    for (Prefill& p : prefills) {
      p.queue.clear();
      p.head = 0;
      p.stage_free.assign(cluster.prefill.config.pipeline_stages, 0.0);
      p.form_pending = false;
      p.used_blocks = 0;
      p.in_flight = 0;
    }
    decodes.resize(has_decode ? cluster.decode.instances : 0);
    for (Decode& d : decodes) {
      d.waiting.clear();
      d.head = 0;
      d.swapped.clear();
      d.swapped_head = 0;
      d.ready.clear();
      d.running.clear();
      d.context_sum = 0;
      d.free_blocks = cluster.decode.kv_blocks;
      d.pulling = 0;
      d.pulling_blocks = 0;
      d.link_free = 0;
      d.stepping = false;
      d.wake_pending = false;
      d.load = 0;
    }
    colocateds.resize(cluster.mode == SimulationMode::kColocated ? cluster.prefill.instances : 0);
    for (Colocated& c : colocateds) {
      c.waiting.clear();
      c.head = 0;
      c.swapped.clear();
      c.swapped_head = 0;
      c.running.clear();
      c.prefilling.clear();
      c.context_sum = 0;
      c.free_blocks = cluster.prefill.kv_blocks;
      c.stepping = false;
      c.wake_pending = false;
      c.load = 0;
    }
  }
};

Simulator::Simulator(std::unique_ptr<State> state) : state_(std::move(state)) {}
Simulator::Simulator(Simulator&&) noexcept = default;
Simulator& Simulator::operator=(Simulator&&) noexcept = default;
Simulator::~Simulator() = default;

const SimulationStats& Simulator::stats() const { return state_->stats; }
const SimulatedCluster& Simulator::cluster() const { return state_->cluster; }

absl::StatusOr<Simulator> Simulator::Create(const SimulatedCluster& cluster,
                                            const SimulatorOptions& options) {
  const SimulationMode mode = cluster.mode;
  if (mode != SimulationMode::kDecodeOnly) {
    if (absl::Status s = CheckPhase(cluster.prefill, "prefill"); !s.ok()) return s;
  }
  if (mode == SimulationMode::kDisaggregated || mode == SimulationMode::kDecodeOnly) {
    if (absl::Status s = CheckPhase(cluster.decode, "decode"); !s.ok()) return s;
  }
  if (!(cluster.kv_bytes_per_token >= 0) || !(cluster.kv_transfer_bytes_per_s >= 0)) {
    return absl::InvalidArgumentError(
        "SimulatedCluster.kv_bytes_per_token and kv_transfer_bytes_per_s must be >= 0 "
        "(0 bandwidth: an instant transfer)");
  }
  const std::pair<const char*, int> positive[] = {
      {"block_size", options.block_size},
      {"prefill_max_batch_tokens", options.prefill_max_batch_tokens},
      {"prefill_max_batch_requests", options.prefill_max_batch_requests},
      {"decode_max_batch_requests", options.decode_max_batch_requests},
      {"colocated_max_batch_tokens", options.colocated_max_batch_tokens},
      {"colocated_max_batch_requests", options.colocated_max_batch_requests},
  };
  for (const auto& [name, value] : positive) {
    if (value < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("SimulatorOptions.", name, " is ", value, "; it must be at least 1"));
    }
  }
  if (!(options.decode_pull_share > 0 && options.decode_pull_share <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("SimulatorOptions.decode_pull_share is ",
                                                   options.decode_pull_share,
                                                   "; use a share in (0, 1], e.g. 0.05"));
  }
  if (!(options.pipeline_stage_overhead_s >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("SimulatorOptions.pipeline_stage_overhead_s is ",
                                                   options.pipeline_stage_overhead_s,
                                                   "; it must be >= 0"));
  }
  auto state = std::make_unique<State>();
  state->cluster = cluster;
  state->options = options;
  return Simulator(std::move(state));
}

absl::StatusOr<const std::vector<RequestTiming>*> Simulator::Run(
    const std::vector<Request>& requests, double time_scale) {
  if (!(time_scale > 0) || !std::isfinite(time_scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("time_scale is ", time_scale, "; it must be a positive number (1 / rate)"));
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    if (r.input_tokens < 1 || r.output_tokens < 1) {
      return absl::InvalidArgumentError(absl::StrCat("requests[", i, "] has ", r.input_tokens,
                                                     " input and ", r.output_tokens,
                                                     " output tokens; both must be at least 1"));
    }
    if (!(r.arrival_s >= 0) || (i > 0 && r.arrival_s < requests[i - 1].arrival_s)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "requests[", i, "] arrives at ", r.arrival_s,
          " s, before the request ahead of it or before 0; sort the requests by arrival"));
    }
  }
  State& s = *state_;
  s.Reset(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    s.reqs[i].arrival = requests[i].arrival_s * time_scale;
    s.reqs[i].input = requests[i].input_tokens;
    s.reqs[i].output = requests[i].output_tokens;
  }
  size_t next = 0;
  while (next < s.reqs.size() || !s.heap.empty()) {
    if (next < s.reqs.size() && (s.heap.empty() || s.reqs[next].arrival <= s.heap.front().time)) {
      s.Arrive(static_cast<int>(next), s.reqs[next].arrival);
      ++next;
      continue;
    }
    std::pop_heap(s.heap.begin(), s.heap.end(), Later());
    const Event e = s.heap.back();
    s.heap.pop_back();
    s.Handle(e);
  }
  s.timings.resize(requests.size());
  int64_t stuck = 0;
  for (size_t i = 0; i < s.reqs.size(); ++i) {
    const State::Req& r = s.reqs[i];
    RequestTiming& t = s.timings[i];
    t = {};
    if (r.failed || !r.done) {
      t.failed = true;
      if (!r.failed) ++stuck;
      continue;
    }
    t.ttft_s = r.first - r.arrival;
    t.tpot_s = r.output > 1 ? (r.last - r.first) / (r.output - 1) : 0.0;
    s.stats.end_s = std::max(s.stats.end_s, r.last);
  }
  if (stuck > 0) {
    return absl::InternalError(absl::StrCat("the simulation ended with ", stuck,
                                            " request(s) unfinished; this is a simulator bug"));
  }
  return &s.timings;
}

absl::StatusOr<const std::vector<RequestTiming>*> Simulator::RunAlone(
    const std::vector<Request>& requests) {
  State& s = *state_;
  const SimulatedCluster& c = s.cluster;
  const SimulatorOptions& o = s.options;
  s.timings.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    if (r.input_tokens < 1 || r.output_tokens < 1) {
      return absl::InvalidArgumentError(absl::StrCat("requests[", i, "] has ", r.input_tokens,
                                                     " input and ", r.output_tokens,
                                                     " output tokens; both must be at least 1"));
    }
    State::Req req;
    req.input = r.input_tokens;
    req.output = r.output_tokens;
    RequestTiming& t = s.timings[i];
    t = {};
    if (!s.Fits(req)) {
      t.failed = true;
      continue;
    }
    const int64_t l = r.input_tokens;
    const bool colocated = c.mode == SimulationMode::kColocated;
    const PhaseSetup& prefill = c.prefill;
    const PhaseSetup& decode = colocated ? c.prefill : c.decode;
    if (c.mode != SimulationMode::kDecodeOnly) {
      const int pp = prefill.config.pipeline_stages;
      if (colocated && o.chunked_prefill) {
        for (int64_t done = 0; done < l;) {
          const int64_t chunk = std::min<int64_t>(l - done, o.colocated_max_batch_tokens);
          t.ttft_s += prefill.model->PrefillSeconds(1, chunk, chunk * (2 * done + chunk)) +
                      (pp > 1 ? pp * o.pipeline_stage_overhead_s : 0.0);
          done += chunk;
        }
      } else {
        // Through every stage (T/pp + overhead each), or a colocated step's T + pp·overhead.
        t.ttft_s = prefill.model->PrefillSeconds(1, l, l * l) +
                   (pp > 1 ? pp * o.pipeline_stage_overhead_s : 0.0);
      }
    }
    if (r.output_tokens > 1 && c.mode != SimulationMode::kPrefillOnly) {
      const double transfer =
          c.mode == SimulationMode::kDisaggregated && c.kv_transfer_bytes_per_s > 0
              ? c.kv_bytes_per_token * l / c.kv_transfer_bytes_per_s
              : 0.0;
      const int64_t mid = l + r.output_tokens / 2;
      t.tpot_s = transfer / (r.output_tokens - 1) + s.DecodeStepSeconds(decode, 1, mid);
    }
  }
  return &s.timings;
}

absl::StatusOr<std::vector<RequestTiming>> Simulate(const SimulatedCluster& cluster,
                                                    const std::vector<Request>& requests,
                                                    const SimulatorOptions& options) {
  absl::StatusOr<Simulator> simulator = Simulator::Create(cluster, options);
  if (!simulator.ok()) return simulator.status();
  absl::StatusOr<const std::vector<RequestTiming>*> timings = simulator->Run(requests);
  if (!timings.ok()) return timings.status();
  return **timings;
}

}  // namespace troupe::serving::placement
