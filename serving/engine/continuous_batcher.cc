#include "serving/engine/continuous_batcher.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gpu/sampling/host_sampling.h"

namespace troupe::serving::engine {

absl::StatusOr<ContinuousBatcher> ContinuousBatcher::Create(ForwardBackend* backend,
                                                            kv::BlockManager* blocks,
                                                            const BatcherOptions& options) {
  if (backend == nullptr || blocks == nullptr) {
    return absl::InvalidArgumentError("ContinuousBatcher needs a backend and a block manager");
  }
  if (blocks->options().block_size != kKvBlockTokens) {
    return absl::InvalidArgumentError(absl::StrCat("the block manager's block size ",
                                                   blocks->options().block_size,
                                                   " is not the cache's ", kKvBlockTokens));
  }
  if (blocks->NumGpuBlocks() > backend->num_kv_blocks()) {
    return absl::InvalidArgumentError(absl::StrCat("the block manager has ", blocks->NumGpuBlocks(),
                                                   " GPU blocks but the backend's cache "
                                                   "only ",
                                                   backend->num_kv_blocks(), "; size them alike"));
  }
  if (options.max_batch_tokens < 1 || options.max_batch_requests < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BatcherOptions: max_batch_tokens (", options.max_batch_tokens,
        ") and max_batch_requests (", options.max_batch_requests, ") must be positive"));
  }
  std::optional<HostKvPool> host_kv;
  if (options.preemption == Preemption::kSwap && blocks->NumCpuBlocks() > 0) {
    absl::StatusOr<HostKvPool> pool = HostKvPool::Create(*backend, blocks->NumCpuBlocks());
    if (!pool.ok()) return pool.status();
    host_kv = *std::move(pool);
  }
  return ContinuousBatcher(backend, blocks, options, std::move(host_kv));
}

absl::Status ContinuousBatcher::Add(GenerationRequest request) {
  if (absl::Status valid = Validate(request); !valid.ok()) return valid;
  Active active;
  active.tokens = request.prompt;
  active.request = std::move(request);
  waiting_.push_back(std::move(active));
  return absl::OkStatus();
}

absl::Status ContinuousBatcher::AddPrefilled(GenerationRequest request, int32_t first_token) {
  if (absl::Status valid = Validate(request); !valid.ok()) return valid;
  absl::StatusOr<int64_t> cached = blocks_->NumTokens(request.id);
  if (!cached.ok() || *cached != static_cast<int64_t>(request.prompt.size())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", request.id, ": its prompt's ", request.prompt.size(),
        " tokens must be allocated in the block manager (and filled) before AddPrefilled"));
  }
  if (first_token < 0 || first_token >= backend_->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("request ", request.id, ": first token ",
                                                   first_token, " is outside the vocabulary"));
  }
  Active active;
  active.tokens = request.prompt;
  active.tokens.push_back(first_token);
  active.generated = 1;
  active.processed = static_cast<int64_t>(request.prompt.size());
  active.request = std::move(request);
  running_.push_back(std::move(active));
  return absl::OkStatus();
}

absl::Status ContinuousBatcher::Validate(const GenerationRequest& request) const {
  const auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("request ", request.id, ": ", what));
  };
  const auto same_id = [&](const Active& a) { return a.request.id == request.id; };
  if (std::any_of(waiting_.begin(), waiting_.end(), same_id) ||
      std::any_of(running_.begin(), running_.end(), same_id) ||
      std::any_of(swapped_.begin(), swapped_.end(), same_id)) {
    return absl::AlreadyExistsError(absl::StrCat("request ", request.id, " is already queued"));
  }
  const model::ModelConfig& config = backend_->config();
  if (request.prompt.empty()) return fail("the prompt is empty");
  for (int32_t token : request.prompt) {
    if (token < 0 || token >= config.vocab_size) {
      return fail(absl::StrCat("prompt token ", token, " is outside the vocabulary [0, ",
                               config.vocab_size, ")"));
    }
  }
  if (request.max_new_tokens < 1) {
    return fail(absl::StrCat("max_new_tokens is ", request.max_new_tokens, "; it must be >= 1"));
  }
  const int64_t total = static_cast<int64_t>(request.prompt.size()) + request.max_new_tokens;
  if (total > config.max_position_embeddings) {
    return fail(absl::StrCat("a prompt of ", request.prompt.size(), " tokens plus ",
                             request.max_new_tokens, " new tokens exceeds the model's context of ",
                             config.max_position_embeddings));
  }
  {  // The sampler checks its parameters; one dummy row is enough.
    const std::vector<float> row(1, 0.0f);
    absl::StatusOr<std::vector<int32_t>> checked =
        gpu::sampling::SampleOnHost(row, 1, 1, {request.sampling});
    if (!checked.ok()) return fail(std::string(checked.status().message()));
  }
  absl::StatusOr<kv::Admission> admission = blocks_->CanAllocate(total);
  if (!admission.ok()) return admission.status();
  if (*admission == kv::Admission::kNever) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request ", request.id, ": ", total, " tokens need ", blocks_->NumBlocksFor(total),
        " KV blocks, more than the cache can give one request (", blocks_->NumGpuBlocks(),
        " blocks, ", blocks_->WatermarkBlocks(), " kept free)"));
  }
  return absl::OkStatus();
}

absl::Status ContinuousBatcher::Cancel(int64_t id) {
  const auto same_id = [&](const Active& a) { return a.request.id == id; };
  if (auto it = std::find_if(waiting_.begin(), waiting_.end(), same_id); it != waiting_.end()) {
    waiting_.erase(it);  // Queued requests hold no blocks.
    return absl::OkStatus();
  }
  if (auto it = std::find_if(running_.begin(), running_.end(), same_id); it != running_.end()) {
    if (absl::Status freed = blocks_->Free(id); !freed.ok()) return freed;
    running_.erase(it);
    return absl::OkStatus();
  }
  if (auto it = std::find_if(swapped_.begin(), swapped_.end(), same_id); it != swapped_.end()) {
    // Its blocks are in the CPU pool; its bytes in host_kv_ are simply overwritten later.
    if (absl::Status freed = blocks_->Free(id); !freed.ok()) return freed;
    swapped_.erase(it);
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("request ", id, " is not queued, running or swapped"));
}

absl::Status ContinuousBatcher::SwapOut(const Active& victim) {
  absl::StatusOr<std::vector<kv::BlockCopy>> copies = blocks_->SwapOut(victim.request.id);
  if (!copies.ok()) return copies.status();
  std::vector<int32_t> gpu_blocks, cpu_blocks;
  for (const kv::BlockCopy& copy : *copies) {
    gpu_blocks.push_back(copy.src);
    cpu_blocks.push_back(copy.dst);
  }
  // The GPU blocks are free in the manager now, but nothing writes them before the next
  // forward pass, so their KV is still there to copy.
  return host_kv_->SwapOut(*backend_, gpu_blocks, cpu_blocks);
}

absl::Status ContinuousBatcher::PreemptNewest() {
  Active victim = std::move(running_.back());
  running_.pop_back();
  ++preemptions_;
  if (host_kv_.has_value()) {
    absl::StatusOr<bool> fits = blocks_->CanSwapOut(victim.request.id);
    if (!fits.ok()) return fits.status();
    if (*fits) {
      if (absl::Status s = SwapOut(victim); !s.ok()) return s;
      ++swaps_;
      // First back in: like a recomputed request, which goes to the front of the queue.
      swapped_.push_front(std::move(victim));
      return absl::OkStatus();
    }
    // The CPU pool is full: recompute this one instead.
  }
  if (absl::Status freed = blocks_->Free(victim.request.id); !freed.ok()) return freed;
  victim.processed = 0;  // Recomputed from its tokens so far when it is admitted again.
  waiting_.push_front(std::move(victim));
  return absl::OkStatus();
}

absl::Status ContinuousBatcher::SwapInQueued(int64_t& budget) {
  const int64_t block_size = blocks_->options().block_size;
  while (!swapped_.empty() && budget > 0 &&
         static_cast<int64_t>(running_.size()) < options_.max_batch_requests) {
    Active& next = swapped_.front();
    const int64_t id = next.request.id;
    const int64_t pending = static_cast<int64_t>(next.tokens.size()) - next.processed;
    if (!options_.chunked_prefill && pending > budget) break;
    // vLLM's rule: its blocks plus one for the next append, above the watermark. With nothing
    // running, the request only needs room for its next token: otherwise a request that fills
    // the cache minus the watermark could never come back.
    absl::StatusOr<bool> can_swap_in = blocks_->CanSwapIn(id);
    if (!can_swap_in.ok()) return can_swap_in.status();
    // Once back, its blocks and the free ones hold this many tokens.
    const int64_t room = blocks_->NumFreeGpuBlocks() * block_size - next.processed;
    if (!*can_swap_in && !(running_.empty() && room >= 1)) break;
    const int64_t chunk = std::min({pending, budget, room});
    if (chunk < pending && !options_.chunked_prefill) break;
    absl::StatusOr<std::vector<kv::BlockCopy>> copies = blocks_->SwapIn(id);
    if (!copies.ok()) return copies.status();
    std::vector<int32_t> cpu_blocks, gpu_blocks;
    for (const kv::BlockCopy& copy : *copies) {
      cpu_blocks.push_back(copy.src);
      gpu_blocks.push_back(copy.dst);
    }
    if (absl::Status s = host_kv_->SwapIn(*backend_, cpu_blocks, gpu_blocks); !s.ok()) return s;
    absl::StatusOr<kv::AppendResult> appended = blocks_->AppendSlots(id, chunk);
    if (!appended.ok()) return appended.status();
    budget -= chunk;
    running_.push_back(std::move(next));
    swapped_.pop_front();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TokenEvent>> ContinuousBatcher::Step() {
  std::vector<SequenceStep> batch;
  std::vector<Active*> members;  // batch[i] runs members[i]
  std::vector<int64_t> chunks;
  int64_t budget = options_.max_batch_tokens;
  const int64_t preemptions_before = preemptions_;

  // 1. Running requests, oldest first: their next token or prompt chunk.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Active& active = running_[i];
    const int64_t pending = static_cast<int64_t>(active.tokens.size()) - active.processed;
    const int64_t chunk = std::min(pending, budget);
    absl::StatusOr<bool> fits = blocks_->CanAppendSlots(active.request.id, chunk);
    if (!fits.ok()) return fits.status();
    if (!*fits) {
      // Make room by preemption, newest first; if this is the newest, it goes itself.
      const bool self = i + 1 == running_.size();
      if (absl::Status s = PreemptNewest(); !s.ok()) return s;
      if (self) break;
      continue;
    }
    absl::StatusOr<kv::AppendResult> appended = blocks_->AppendSlots(active.request.id, chunk);
    if (!appended.ok()) return appended.status();
    budget -= chunk;
    ++i;
  }
  // 2. Swapped requests come back before any waiting one is admitted, as in vLLM's scheduler;
  // not in a step that had to preempt, when the cache has no room to spare.
  if (preemptions_ == preemptions_before) {
    if (absl::Status s = SwapInQueued(budget); !s.ok()) return s;
  }
  // 3. Waiting requests, in arrival order, while none is swapped out and the budget, the
  // request limit and the cache allow. Without chunked prefill a prompt is admitted only whole
  // (head-of-line: a prompt that does not fit waits, and so do the ones behind it).
  std::vector<Active> admitted;
  while (swapped_.empty() && !waiting_.empty() && budget > 0 &&
         static_cast<int64_t>(running_.size() + admitted.size()) < options_.max_batch_requests) {
    Active& next = waiting_.front();
    const int64_t pending = static_cast<int64_t>(next.tokens.size());
    if (!options_.chunked_prefill && pending > budget) break;
    const int64_t chunk = std::min(pending, budget);
    absl::StatusOr<kv::Admission> admission = blocks_->CanAllocate(pending);
    if (!admission.ok()) return admission.status();
    if (*admission != kv::Admission::kOk) break;
    if (absl::Status s = blocks_->Allocate(next.request.id, chunk); !s.ok()) return s;
    budget -= chunk;
    admitted.push_back(std::move(next));
    waiting_.pop_front();
  }
  for (Active& a : admitted) running_.push_back(std::move(a));

  // The batch: every running request with tokens appended this step (the block manager counts
  // them; the rest were out of budget), in running order.
  for (Active& active : running_) {
    absl::StatusOr<int64_t> cached = blocks_->NumTokens(active.request.id);
    if (!cached.ok()) return cached.status();
    const int64_t chunk = *cached - active.processed;
    if (chunk <= 0) continue;
    members.push_back(&active);
    chunks.push_back(chunk);
  }
  if (members.empty()) return std::vector<TokenEvent>{};

  for (size_t i = 0; i < members.size(); ++i) {
    Active& active = *members[i];
    absl::StatusOr<std::vector<int32_t>> table = blocks_->BlockTable(active.request.id);
    if (!table.ok()) return table.status();
    SequenceStep step;
    step.seq_id = active.request.id;
    step.tokens.assign(active.tokens.begin() + active.processed,
                       active.tokens.begin() + active.processed + chunks[i]);
    step.cached_tokens = static_cast<int>(active.processed);
    step.block_table = *std::move(table);
    batch.push_back(std::move(step));
  }
  // 4. A request whose every known token is now cached gets its next token, the k-th new token
  // of a request drawn at offset k of its seed. The backend samples every row (on the GPU for
  // the CUDA backend: the logits stay there); rows of prompts still being chunked are ignored.
  std::vector<gpu::sampling::SamplingParams> params;
  params.reserve(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    params.push_back(members[i]->request.sampling);
    params.back().offset = static_cast<uint64_t>(members[i]->generated);
  }
  absl::StatusOr<std::vector<int32_t>> drawn = backend_->ForwardAndSample(batch, params);
  if (!drawn.ok()) return drawn.status();
  std::vector<Active*> sampled;
  std::vector<int32_t> sampled_tokens;
  for (size_t i = 0; i < members.size(); ++i) {
    Active& active = *members[i];
    active.processed += chunks[i];
    if (active.processed < static_cast<int64_t>(active.tokens.size())) continue;
    sampled.push_back(&active);
    sampled_tokens.push_back((*drawn)[i]);
  }
  if (sampled.empty()) return std::vector<TokenEvent>{};
  const std::vector<int32_t>* tokens = &sampled_tokens;
  std::vector<TokenEvent> events;
  std::vector<int64_t> finished;
  for (size_t i = 0; i < sampled.size(); ++i) {
    Active& active = *sampled[i];
    TokenEvent event;
    event.request_id = active.request.id;
    event.token = (*tokens)[i];
    active.tokens.push_back(event.token);
    ++active.generated;
    if (active.request.stop_token && event.token == *active.request.stop_token) {
      event.reason = FinishReason::kStop;
    } else if (active.generated >= active.request.max_new_tokens) {
      event.reason = FinishReason::kLength;
    }
    event.finished = event.reason != FinishReason::kNone;
    if (event.finished) finished.push_back(active.request.id);
    events.push_back(event);
  }
  for (int64_t id : finished) {
    if (absl::Status s = blocks_->Free(id); !s.ok()) return s;
    running_.erase(std::find_if(running_.begin(), running_.end(),
                                [&](const Active& a) { return a.request.id == id; }));
  }
  return events;
}

absl::StatusOr<Preemption> ResolvePreemption(const std::string& name, int64_t swap_blocks,
                                             bool decode_role) {
  if (swap_blocks < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("swap blocks is ", swap_blocks, "; it must be >= 0 (0: no swapping)"));
  }
  if (name.empty()) {
    return decode_role && swap_blocks > 0 ? Preemption::kSwap : Preemption::kRecompute;
  }
  if (name == "recompute") return Preemption::kRecompute;
  if (name != "swap") {
    return absl::InvalidArgumentError(
        absl::StrCat("preemption is '", name,
                     "'; use swap or recompute (or leave it empty: swap on a decode instance "
                     "with swap blocks)"));
  }
  if (swap_blocks == 0) {
    return absl::InvalidArgumentError(
        "preemption swap needs host memory to swap into; give it swap blocks (> 0)");
  }
  return Preemption::kSwap;
}

}  // namespace troupe::serving::engine
