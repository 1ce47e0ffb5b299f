// PipelineBackend: pipeline parallelism as stage actors. A model split into stages
// (stage_backend.h: layers [a, b) each, together all of them in order) becomes one
// ForwardBackend: each stage runs in an actor of its own (on its own thread, as it would on its
// own GPU), a step goes from stage to stage as hidden states in messages, and the last stage's
// logits come back. The KV cache is the stages' together: ExportKv and ImportKv ask each stage for
// the layers of the range it holds, so KV moves between instances of different pipeline depths
// stage by stage, each stage moving only the layers it shares with the requested range.
//
// One step is in flight at a time (no micro-batches): the stages run one after another, as
// DistServe's released code does; micro-batching, which keeps every stage busy, is not done.
//
//   std::vector<std::unique_ptr<StageBackend>> stages;  // e.g. CreateCpuStage for [0, 6), [6, 12)
//   absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
//       CreatePipelineBackend(system, std::move(stages));
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "caf/actor_system.hpp"
#include "serving/engine/forward_backend.h"
#include "serving/engine/stage_backend.h"

namespace troupe::serving::engine {

// CreatePipelineBackend checks that `stages` are of one model and one cache size and cover its
// layers in order without gaps or overlaps (the error names the first stage that does not), and
// spawns their actors. The backend owns the stages; its destructor stops the actors.
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreatePipelineBackend(
    caf::actor_system& system, std::vector<std::unique_ptr<StageBackend>> stages);

}  // namespace troupe::serving::engine
