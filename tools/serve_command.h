// `troupe serve`: the OpenAI-compatible server over DistServe's disaggregated instances, in one
// process on the CPU. With no flags it is the embedded default: the tiny model with seeded
// random weights, one prefill and one decode instance (KV moves between them as bytes over
// actor messages), on http://127.0.0.1:8000. It prints the URL and an example curl, and stops
// cleanly on Ctrl-C / SIGTERM (or after --duration_s).
//
//   troupe serve
//   troupe serve --port=0 --colocated --api_key=secret
#pragma once

#include "actors/runtime.h"

namespace troupe {

int RunServe(actors::ShutdownSignals& signals);

}  // namespace troupe
