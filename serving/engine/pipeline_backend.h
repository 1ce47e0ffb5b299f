// PipelineBackend: pipeline parallelism as stage actors. A model split into stages
// (stage_backend.h: layers [a, b) each, together all of them in order) becomes one
// ForwardBackend: each stage runs in an actor of its own (on its own thread, as it would on its
// own GPU), a step goes from stage to stage as hidden states in messages, and the last stage's
// logits come back. The KV cache is the stages' together: ExportKv and ImportKv ask each stage for
// the layers of the range it holds, so KV moves between instances of different pipeline depths
// stage by stage, each stage moving only the layers it shares with the requested range.
// DeviceKvShards lists every stage's shards and CopyKvFromDevice hands the copy to every stage,
// so device transports move KV between pipelines of CUDA stages directly.
//
// A step's sequences are split into micro-batches (one per stage by default, as DistServe keeps
// pp micro-batches in flight) that follow each other through the stages, so the stages work at
// once on different micro-batches; Forward returns when the last micro-batch is through.
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
struct PipelineOptions {
  // Micro-batches a step is split into (at most one per sequence); 0: one per stage.
  int micro_batches = 0;
};

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreatePipelineBackend(
    caf::actor_system& system, std::vector<std::unique_ptr<StageBackend>> stages,
    const PipelineOptions& options = {});

}  // namespace troupe::serving::engine
