// ContinuousBatcher: vLLM-style iteration-level scheduling over a ForwardBackend and a KV block
// manager, with optional Sarathi-style chunked prefill. It is the engine loop of a colocated
// instance (and the decode loop of a disaggregated one), kept free of actors and threads so it
// can be tested step by step.
//
// Each Step() builds one batch under a token budget: first every running request's next input
// (one token when decoding, the next chunk of its prompt when prefilling in chunks), then
// waiting requests in arrival order while the budget, the sequence limit and the KV cache allow
// (admission keeps the block manager's watermark free). When a running request cannot get a
// block, the newest running request is preempted, in one of two ways (BatcherOptions::preemption):
//  - recomputation: its blocks are freed and it goes back to the front of the queue with its
//    tokens so far as its prompt;
//  - swapping: its blocks move to the block manager's CPU pool, their KV bytes are copied into a
//    HostKvPool, and it waits in a swapped queue. Each step swaps swapped requests back in
//    (their KV copied into fresh GPU blocks) after the running requests and before any waiting
//    request is admitted, as vLLM does. With no free CPU blocks it falls back to recomputation.
// Either way the request's tokens are the same as without preemption.
// Tokens are drawn with each request's SamplingParams by the host sampler, which makes the GPU
// sampler's draws (gpu/sampling/host_sampling.h).
//
//   ContinuousBatcher batcher = *ContinuousBatcher::Create(backend.get(), &blocks, {});
//   batcher.Add({/*id=*/1, prompt, /*max_new_tokens=*/32});
//   while (batcher.HasWork()) for (const TokenEvent& e : *batcher.Step()) Stream(e);
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/sampling/sampling_params.h"
#include "serving/engine/forward_backend.h"
#include "serving/engine/host_kv_pool.h"
#include "serving/kv/block_manager.h"

namespace troupe::serving::engine {

struct GenerationRequest {
  int64_t id = 0;
  std::vector<int32_t> prompt;
  int max_new_tokens = 16;
  std::optional<int32_t> stop_token;  // e.g. GPT-2's <|endoftext|>; it is emitted, then stops
  // How tokens are drawn (gpu/sampling/sampling_params.h). Greedy unless set; the k-th new
  // token uses draw offset k of the seed, so a seeded request gives the same tokens on every
  // run, in any batch, after a preemption, and on the GPU sampler.
  gpu::sampling::SamplingParams sampling = {/*temperature=*/0.0f};
};

enum class FinishReason { kNone, kLength, kStop };

// TokenEvent is one generated token; `finished` marks a request's last one (its blocks are
// freed by then).
struct TokenEvent {
  int64_t request_id = 0;
  int32_t token = 0;
  bool finished = false;
  FinishReason reason = FinishReason::kNone;
};

// Preemption is how a running request gives up its KV blocks when another one needs them.
//  - kRecompute drops its KV and prefills its tokens so far again when it is readmitted: no host
//    memory, at the cost of the recomputation. vLLM uses it for single-sequence groups.
//  - kSwap copies its KV to host memory (the block manager's CPU pool) and back: a copy of the
//    blocks both ways instead of a prefill. vLLM uses it for multi-sequence groups (beam search,
//    parallel sampling), whose shared blocks recomputation would lose, and DistServe's decode
//    instance swaps under memory pressure. It needs num_cpu_blocks > 0 in the block manager,
//    and falls back to recomputation whenever the CPU pool cannot take the request.
enum class Preemption { kRecompute, kSwap };

struct BatcherOptions {
  // Tokens per step and requests per step: vLLM's scheduler defaults (max_num_batched_tokens
  // 2048, max_num_seqs 256).
  int max_batch_tokens = 2048;
  int max_batch_requests = 256;
  // Sarathi-style chunked prefill: a prompt may be split over steps to fill the token budget
  // beside the decodes; without it a prompt is admitted only whole.
  bool chunked_prefill = false;
  // How to preempt (see Preemption). Recomputation by default, vLLM's choice for the
  // single-sequence requests this batcher runs; a DistServe decode instance swaps.
  Preemption preemption = Preemption::kRecompute;
};

class ContinuousBatcher {
 public:
  // Create checks that the block manager fits the backend's cache (same block size, no more
  // blocks) and that the options are positive. Neither pointer is owned; both must outlive it.
  // With Preemption::kSwap it allocates the host arena for the manager's CPU blocks.
  static absl::StatusOr<ContinuousBatcher> Create(ForwardBackend* backend, kv::BlockManager* blocks,
                                                  const BatcherOptions& options);

  // Add queues a request. Refused, naming the request: a duplicate id, an empty prompt, a token
  // outside the vocabulary, max_new_tokens < 1, prompt + max_new_tokens beyond the model's
  // context, more KV blocks than the cache can ever give one request, or bad sampling
  // parameters (the sampler's own message).
  absl::Status Add(GenerationRequest request);

  // Validate applies Add's checks to a request without queueing it.
  absl::Status Validate(const GenerationRequest& request) const;

  // AddPrefilled starts a request whose prompt was prefilled elsewhere (DistServe's decode
  // side): the caller allocated its blocks in the block manager (Allocate(id, prompt size)) and
  // filled them with the prompt's KV; `first_token` is the prefill's token. The request decodes
  // from the next step (preempted, it is swapped or recomputed like any other). The checks
  // of Add apply, and the blocks must hold exactly the prompt.
  absl::Status AddPrefilled(GenerationRequest request, int32_t first_token);

  // Cancel drops a waiting, running or swapped request and frees its blocks (GPU or CPU);
  // NotFound if unknown.
  absl::Status Cancel(int64_t id);

  // Step runs one batch and returns the tokens it produced (none for requests whose prompt is
  // still being prefilled in chunks). A backend error is returned as is.
  absl::StatusOr<std::vector<TokenEvent>> Step();

  bool HasWork() const { return !waiting_.empty() || !running_.empty() || !swapped_.empty(); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  // num_swapped is the number of requests whose KV is in host memory now.
  int64_t num_swapped() const { return static_cast<int64_t>(swapped_.size()); }
  // num_preemptions counts preemptions so far, by recomputation and by swapping alike.
  int64_t num_preemptions() const { return preemptions_; }
  // num_swaps counts the preemptions that swapped a request out (each comes back in once);
  // num_preemptions() - num_swaps() were recomputations.
  int64_t num_swaps() const { return swaps_; }

 private:
  struct Active {
    GenerationRequest request;
    std::vector<int32_t> tokens;  // prompt, then generated tokens
    int generated = 0;
    int64_t processed = 0;  // tokens whose KV is in the cache
  };

  ContinuousBatcher(ForwardBackend* backend, kv::BlockManager* blocks, BatcherOptions options,
                    std::optional<HostKvPool> host_kv)
      : backend_(backend), blocks_(blocks), options_(options), host_kv_(std::move(host_kv)) {}

  // PreemptNewest takes the newest running request off the GPU: swapped out to the host when
  // swapping is on and the CPU pool can take it, else its blocks are freed and it goes first in
  // the queue, to be recomputed.
  absl::Status PreemptNewest();
  // SwapOut moves `victim`'s blocks to the CPU pool and their KV into host_kv_.
  absl::Status SwapOut(const Active& victim);
  // SwapInQueued brings swapped requests back, first swapped-in first, while the cache (with
  // vLLM's headroom), the token budget and the request limit allow, and gives each its next
  // token's (or prompt chunk's) slots. They join the end of the running requests.
  absl::Status SwapInQueued(int64_t& budget);

  ForwardBackend* backend_;
  kv::BlockManager* blocks_;
  BatcherOptions options_;
  std::optional<HostKvPool> host_kv_;  // set when swapping is on and there are CPU blocks
  std::deque<Active> waiting_;
  std::vector<Active> running_;  // oldest first
  std::deque<Active> swapped_;   // swapped out, next to come back first
  int64_t preemptions_ = 0;
  int64_t swaps_ = 0;
};

// ResolvePreemption reads a preemption setting: "swap", "recompute", or "" for the default,
// which is swap for a DistServe decode instance with host blocks to swap into (`swap_blocks`)
// and recompute otherwise. Swap without host blocks and unknown names are errors with the fix.
absl::StatusOr<Preemption> ResolvePreemption(const std::string& name, int64_t swap_blocks,
                                             bool decode_role);

}  // namespace troupe::serving::engine
