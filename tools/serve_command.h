// `troupe serve`: the OpenAI-compatible server over DistServe's disaggregated instances.
//
// With no --config it is the embedded default: one process on the CPU running the tiny model
// with seeded random weights, one prefill and one decode instance (KV moves between them as
// bytes over actor messages) and the server with its router, on http://127.0.0.1:8000. The
// embedded default is a cluster TOML built from the flags (EmbeddedServeConfig), started like
// any other. With --config X.toml it starts the [[node]] named by --node (or the file's only
// node) of any serving cluster, across processes and hosts; each node joins through the first.
// It prints the URL and an example curl, and stops cleanly on Ctrl-C / SIGTERM (or after
// --duration_s).
//
//   troupe serve
//   troupe serve --port=0 --colocated --api_key=secret
//   troupe serve --config=configs/serve_disaggregated.toml --node=decode0
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "actors/node.h"

namespace troupe {

// EmbeddedServeConfig is the default cluster as TOML, from the model and server flags: node
// "local" with a prefill and a decode instance (or one colocated instance with --colocated) and
// the server.
absl::StatusOr<std::string> EmbeddedServeConfig();

// AddServing gives a node the serving roles and message types.
void AddServing(actors::NodeOptions& options);

}  // namespace troupe
