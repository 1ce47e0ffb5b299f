// Runtimes for tests and benchmarks: a node named "n0" with a small scheduler, no network
// unless asked, and optionally a directory.
//
//   std::unique_ptr<Runtime> runtime = StartTestRuntime();
//   caf::actor directory = StartTestDirectory(*runtime);
#pragma once

#include <memory>
#include <string>

#include "actors/directory.h"
#include "actors/runtime.h"

namespace troupe::actors {

inline std::unique_ptr<Runtime> StartTestRuntime(int scheduler_threads = 2,
                                                 bool load_middleman = false,
                                                 const std::string& node = "n0") {
  RuntimeOptions options;
  options.node_name = node;
  options.scheduler_threads = scheduler_threads;
  options.load_middleman = load_middleman;
  return std::move(*Runtime::Create(options));
}

// StartTestDirectory spawns a directory for `node` (not published), owned by `runtime`.
inline caf::actor StartTestDirectory(Runtime& runtime, const std::string& node = "n0") {
  caf::actor directory =
      SpawnDirectory(runtime.system(), DirectoryOptions{NodeInfo{node, "127.0.0.1", 0, {}}});
  runtime.Own(directory);
  return directory;
}

}  // namespace troupe::actors
