#include "tools/serve_command.h"

#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "serving/cluster/cpu_backends.h"
#include "serving/cluster/serving_roles.h"
#include "serving/instance/messages.h"
#include "serving/transfer/kv_transport.h"
#include "tools/common_flags.h"
#include "tools/model_flags.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "`serve`: the address to listen on.");
ABSL_FLAG(int, port, 8000, "`serve`: the port to listen on (0: an ephemeral one).");
ABSL_FLAG(bool, colocated, false,
          "`serve`: one colocated instance (vLLM-style) instead of a prefill and a decode one.");
ABSL_FLAG(int, max_in_flight, 256, "`serve`: requests in flight before 429.");
// The model flags (tools/model_flags.cc), written into the embedded config.
ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, weights);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::string, preemption);

namespace troupe {
namespace {

// Quoted is `text` as a TOML basic string.
std::string Quoted(const std::string& text) {
  return absl::StrCat("\"", absl::StrReplaceAll(text, {{"\\", "\\\\"}, {"\"", "\\\""}}), "\"");
}

// ModelParams are the [actor.params] lines every instance of the embedded cluster shares.
std::string ModelParams() {
  std::string params = absl::StrCat("model = ", Quoted(absl::GetFlag(FLAGS_model)), "\n",
                                    "seed = ", absl::GetFlag(FLAGS_seed), "\n");
  if (!absl::GetFlag(FLAGS_weights).empty()) {
    absl::StrAppend(&params, "weights = ", Quoted(absl::GetFlag(FLAGS_weights)), "\n");
  }
  return params;
}

std::string Actor(const std::string& name, const std::string& role, const std::string& params) {
  return absl::StrCat("\n[[actor]]\nname = \"", name, "\"\nrole = \"", role,
                      "\"\nnode = \"local\"\n[actor.params]\n", params);
}

}  // namespace

absl::StatusOr<std::string> EmbeddedServeConfig() {
  const bool colocated = absl::GetFlag(FLAGS_colocated);
  if (KvBlocksFlag() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv_blocks is ", KvBlocksFlag(), "; it must be at least 1"));
  }
  // Checked here so the error names the flags, not the generated config.
  if (absl::StatusOr<serving::engine::Preemption> p = PreemptionFromFlags(!colocated); !p.ok()) {
    return p.status();
  }
  const std::string instance = ModelParams() + absl::StrCat("kv_blocks = ", KvBlocksFlag(), "\n");
  const std::string engine =
      instance + absl::StrCat("swap_blocks = ", SwapBlocksFlag(), "\n",
                              "preemption = ", Quoted(absl::GetFlag(FLAGS_preemption)), "\n");
  std::string config =
      "[cluster]\nname = \"serve\"\n\n[[node]]\nname = \"local\"\nhost = \"127.0.0.1\"\n"
      "port = 0\n";
  std::string server = ModelParams();
  if (colocated) {
    absl::StrAppend(&config,
                    Actor("colocated", "colocated",
                          engine + absl::StrCat("chunked_prefill = ",
                                                ChunkedPrefillFlag() ? "true" : "false", "\n")));
    absl::StrAppend(&server, "prefill = \"local/colocated\"\n");
  } else {
    absl::StrAppend(&config, Actor("prefill", "prefill", instance),
                    Actor("decode", "decode", engine));
    absl::StrAppend(&server, "prefill = \"local/prefill\"\ndecode = \"local/decode\"\n");
  }
  absl::StrAppend(&server, "host = ", Quoted(absl::GetFlag(FLAGS_host)), "\n",
                  "port = ", absl::GetFlag(FLAGS_port), "\n",
                  "api_key = ", Quoted(absl::GetFlag(FLAGS_api_key)), "\n",
                  "max_in_flight = ", absl::GetFlag(FLAGS_max_in_flight), "\n",
                  "tokenizer = ", Quoted(TokenizerFlagOrDefault()), "\n");
  absl::StrAppend(&config, Actor("server", "server", server));
  return config;
}

void AddServing(actors::NodeOptions& options) {
  serving::cluster::AddServingRoles(options.roles,
                                    {TokenizerFlagOrDefault(), serving::cluster::CpuBackends(),
                                     [] { return serving::transfer::CpuKvTransports(); }});
  options.register_types.push_back(serving::instance::RegisterServingMessageTypes);
}

}  // namespace troupe
