#include "tools/serve_command.h"

#include <csignal>
#include <cstdio>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "caf/all.hpp"
#include "serving/engine/cpu_backend.h"
#include "serving/frontend/openai_server.h"
#include "serving/instance/colocated_instance.h"
#include "serving/instance/messages.h"
#include "serving/instance/prefill_instance.h"
#include "tools/model_flags.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "`serve`: the address to listen on.");
ABSL_FLAG(int, port, 8000, "`serve`: the port to listen on (0: an ephemeral one).");
ABSL_FLAG(std::string, api_key, "", "`serve`: require \"Authorization: Bearer <key>\".");
ABSL_FLAG(bool, colocated, false,
          "`serve`: one colocated instance (vLLM-style) instead of a prefill and a decode one.");
ABSL_FLAG(int, max_in_flight, 256, "`serve`: requests in flight before 429.");
ABSL_DECLARE_FLAG(double, duration_s);

namespace troupe {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "troupe: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int RunServe(actors::ShutdownSignals& signals) {
  absl::StatusOr<LoadedModel> loaded = LoadModelFromFlags();
  if (!loaded.ok()) return Fail(loaded.status());
  actors::RuntimeOptions runtime_options;
  runtime_options.node_name = "serve";
  runtime_options.load_middleman = false;
  runtime_options.register_types.push_back(serving::instance::RegisterServingMessageTypes);
  absl::StatusOr<std::unique_ptr<actors::Runtime>> runtime =
      actors::Runtime::Create(runtime_options);
  if (!runtime.ok()) return Fail(runtime.status());
  const auto backend = [&]() {
    return serving::engine::CreateCpuBackend(loaded->config, *loaded->weights,
                                             {/*num_kv_blocks=*/KvBlocksFlag()});
  };
  // The instance that takes requests: a prefill instance handing off to a decode one, or one
  // colocated instance.
  caf::actor engine;
  std::vector<caf::actor> instances;
  serving::instance::ColocatedInstanceOptions decode_options;
  absl::StatusOr<std::unique_ptr<serving::engine::ForwardBackend>> decode_backend = backend();
  if (!decode_backend.ok()) return Fail(decode_backend.status());
  decode_options.name = absl::GetFlag(FLAGS_colocated) ? "colocated" : "decode";
  decode_options.backend = *std::move(decode_backend);
  decode_options.batcher.chunked_prefill = ChunkedPrefillFlag();
  absl::StatusOr<serving::engine::Preemption> preemption =
      PreemptionFromFlags(/*decode_role=*/!absl::GetFlag(FLAGS_colocated));
  if (!preemption.ok()) return Fail(preemption.status());
  decode_options.batcher.preemption = *preemption;
  decode_options.num_cpu_blocks = SwapBlocksFlag();
  absl::StatusOr<caf::actor> decode =
      serving::instance::SpawnColocatedInstance((*runtime)->system(), std::move(decode_options));
  if (!decode.ok()) return Fail(decode.status());
  instances.push_back(*decode);
  engine = *decode;
  if (!absl::GetFlag(FLAGS_colocated)) {
    serving::instance::PrefillInstanceOptions prefill_options;
    absl::StatusOr<std::unique_ptr<serving::engine::ForwardBackend>> prefill_backend = backend();
    if (!prefill_backend.ok()) return Fail(prefill_backend.status());
    prefill_options.backend = *std::move(prefill_backend);
    prefill_options.decode = *decode;
    absl::StatusOr<caf::actor> prefill =
        serving::instance::SpawnPrefillInstance((*runtime)->system(), std::move(prefill_options));
    if (!prefill.ok()) return Fail(prefill.status());
    instances.push_back(*prefill);
    engine = *prefill;
  }
  serving::frontend::OpenAiServerOptions server_options;
  server_options.model_name = loaded->config.name;
  server_options.context = loaded->config.max_position_embeddings;
  server_options.api_key = absl::GetFlag(FLAGS_api_key);
  server_options.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
  serving::frontend::OpenAiServer server((*runtime)->system(), engine, loaded->tokenizer.get(),
                                         server_options);
  absl::StatusOr<int> port = server.Start(absl::GetFlag(FLAGS_host), absl::GetFlag(FLAGS_port));
  if (!port.ok()) return Fail(port.status());
  const std::string url = absl::StrCat("http://", absl::GetFlag(FLAGS_host), ":", *port);
  std::printf("Troupe is serving %s (%s) at %s\n", loaded->config.name.c_str(),
              loaded->weights->Describe().c_str(), url.c_str());
  std::printf("  engine: %s, on the CPU\n",
              absl::GetFlag(FLAGS_colocated)
                  ? "one colocated instance (continuous batching)"
                  : "one prefill and one decode instance (KV moves as bytes between them)");
  std::printf(
      "  try: curl %s/v1/completions -H 'Content-Type: application/json'%s "
      "-d '{\"prompt\": \"Hello, my name is\", \"max_tokens\": 16}'\n",
      url.c_str(), server_options.api_key.empty() ? "" : " -H 'Authorization: Bearer <key>'");
  std::printf("  Ctrl-C stops it.\n");
  std::fflush(stdout);
  const absl::Time begin = absl::Now();
  const double duration_s = absl::GetFlag(FLAGS_duration_s);
  while (true) {
    if (std::optional<int> signal = signals.Wait(absl::Milliseconds(200))) {
      std::printf("received %s; shutting down\n", *signal == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    if (duration_s > 0 && absl::Now() - begin >= absl::Seconds(duration_s)) {
      std::printf("ran for %.1f s (--duration_s); shutting down\n", duration_s);
      break;
    }
  }
  server.Stop();
  for (const caf::actor& instance : instances) {
    caf::anon_send_exit(instance, caf::exit_reason::user_shutdown);
  }
  return 0;
}

}  // namespace troupe
