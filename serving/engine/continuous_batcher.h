// ContinuousBatcher: vLLM-style iteration-level scheduling over a ForwardBackend and a KV block
// manager, with optional Sarathi-style chunked prefill. It is the engine loop of a colocated
// instance (and the decode loop of a disaggregated one), kept free of actors and threads so it
// can be tested step by step.
//
// Each Step() builds one batch under a token budget: first every running request's next input
// (one token when decoding, the next chunk of its prompt when prefilling in chunks), then
// waiting requests in arrival order while the budget, the sequence limit and the KV cache allow
// (admission keeps the block manager's watermark free). When a running request cannot get a
// block, the newest running request is preempted by recomputation, as vLLM does: its blocks are
// freed and it goes back to the front of the queue with its tokens so far as its prompt.
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
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/sampling/sampling_params.h"
#include "serving/engine/forward_backend.h"
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

struct BatcherOptions {
  // Tokens per step and requests per step: vLLM's scheduler defaults (max_num_batched_tokens
  // 2048, max_num_seqs 256).
  int max_batch_tokens = 2048;
  int max_batch_requests = 256;
  // Sarathi-style chunked prefill: a prompt may be split over steps to fill the token budget
  // beside the decodes; without it a prompt is admitted only whole.
  bool chunked_prefill = false;
};

class ContinuousBatcher {
 public:
  // Create checks that the block manager fits the backend's cache (same block size, no more
  // blocks) and that the options are positive. Neither pointer is owned; both must outlive it.
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
  // from the next step (preempted, it is recomputed from its prompt like any other). The checks
  // of Add apply, and the blocks must hold exactly the prompt.
  absl::Status AddPrefilled(GenerationRequest request, int32_t first_token);

  // Cancel drops a waiting or running request and frees its blocks; NotFound if unknown.
  absl::Status Cancel(int64_t id);

  // Step runs one batch and returns the tokens it produced (none for requests whose prompt is
  // still being prefilled in chunks). A backend error is returned as is.
  absl::StatusOr<std::vector<TokenEvent>> Step();

  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  // num_preemptions counts recomputation preemptions so far.
  int64_t num_preemptions() const { return preemptions_; }

 private:
  struct Active {
    GenerationRequest request;
    std::vector<int32_t> tokens;  // prompt, then generated tokens
    int generated = 0;
    int64_t processed = 0;  // tokens whose KV is in the cache
  };

  ContinuousBatcher(ForwardBackend* backend, kv::BlockManager* blocks, BatcherOptions options)
      : backend_(backend), blocks_(blocks), options_(options) {}

  // Preempt frees the newest running request's blocks and puts it first in the queue.
  absl::Status PreemptNewest();

  ForwardBackend* backend_;
  kv::BlockManager* blocks_;
  BatcherOptions options_;
  std::deque<Active> waiting_;
  std::vector<Active> running_;  // oldest first
  int64_t preemptions_ = 0;
};

}  // namespace troupe::serving::engine
