#include "serving/cluster/serving_roles.h"

#include <cstdio>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actors/messages.h"
#include "caf/all.hpp"
#include "serving/engine/continuous_batcher.h"
#include "serving/frontend/openai_server.h"
#include "serving/instance/colocated_instance.h"
#include "serving/instance/messages.h"
#include "serving/instance/prefill_instance.h"
#include "serving/instance/router.h"
#include "serving/tokenizer/tokenizer.h"

namespace troupe::serving::cluster {
namespace {

using actors::ActorSpec;
using actors::IntParam;
using actors::RoleContext;
using actors::StringParam;

absl::Status ParamError(const ActorSpec& spec, const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(spec.where, " (", spec.name, ").params.", key, ": ", what));
}

absl::StatusOr<bool> BoolParam(const ActorSpec& spec, const std::string& key, bool fallback) {
  auto it = spec.params.find(key);
  if (it == spec.params.end()) return fallback;
  if (const bool* value = std::get_if<bool>(&it->second)) return *value;
  return ParamError(spec, key, "must be true or false");
}

// PositiveParam is an integer parameter that must be at least `min`.
absl::StatusOr<int> IntAtLeast(const ActorSpec& spec, const std::string& key, int64_t fallback,
                               int64_t min) {
  absl::StatusOr<int64_t> value = IntParam(spec, key, fallback);
  if (!value.ok()) return value.status();
  if (*value < min || *value > (int64_t{1} << 30)) {
    return ParamError(spec, key, absl::StrCat("is ", *value, "; it must be at least ", min));
  }
  return static_cast<int>(*value);
}

absl::StatusOr<std::vector<std::string>> NamesParam(const ActorSpec& spec, const std::string& key) {
  absl::StatusOr<std::string> text = StringParam(spec, key, "");
  if (!text.ok()) return text.status();
  std::vector<std::string> names;
  for (absl::string_view name : absl::StrSplit(*text, ',', absl::SkipWhitespace())) {
    names.emplace_back(absl::StripAsciiWhitespace(name));
  }
  return names;
}

// Model is an instance's model: the preset, and its weights (seeded random or a checkpoint).
struct Model {
  model::ModelConfig config;
  std::unique_ptr<model::WeightSource> weights;
};

absl::StatusOr<Model> ModelParams(const ActorSpec& spec) {
  absl::StatusOr<std::string> name = StringParam(spec, "model", "tiny");
  if (!name.ok()) return name.status();
  absl::StatusOr<model::ModelConfig> config = model::ModelPreset(*name);
  if (!config.ok()) return ParamError(spec, "model", std::string(config.status().message()));
  absl::StatusOr<std::string> weights = StringParam(spec, "weights", "");
  if (!weights.ok()) return weights.status();
  absl::StatusOr<int64_t> seed = IntParam(spec, "seed", 0);
  if (!seed.ok()) return seed.status();
  Model m{*std::move(config), nullptr};
  if (weights->empty()) {
    m.weights = model::RandomWeights(static_cast<uint64_t>(*seed));
  } else {
    absl::StatusOr<std::unique_ptr<model::WeightSource>> checkpoint =
        model::OpenCheckpoint(*weights);
    if (!checkpoint.ok()) {
      return ParamError(spec, "weights", std::string(checkpoint.status().message()));
    }
    m.weights = *std::move(checkpoint);
  }
  return m;
}

absl::StatusOr<std::unique_ptr<engine::ForwardBackend>> Backend(const ServingRoleOptions& options,
                                                                const RoleContext& context) {
  const ActorSpec& spec = context.spec;
  absl::StatusOr<Model> m = ModelParams(spec);
  if (!m.ok()) return m.status();
  absl::StatusOr<int> kv_blocks = IntAtLeast(spec, "kv_blocks", 256, 1);
  if (!kv_blocks.ok()) return kv_blocks.status();
  absl::StatusOr<int> stages = IntAtLeast(spec, "pipeline_stages", 1, 1);
  if (!stages.ok()) return stages.status();
  absl::StatusOr<int> tp = IntAtLeast(spec, "tensor_parallel", 1, 1);
  if (!tp.ok()) return tp.status();
  if (*stages > m->config.num_layers) {
    return ParamError(spec, "pipeline_stages",
                      absl::StrCat("is ", *stages, " but ", m->config.name, " has only ",
                                   m->config.num_layers, " layers"));
  }
  // Loading a large model takes a while (OPT-13B: about 20 s on a GPU host): say so.
  std::printf("%s: loading %s (%s) on %s ...\n", spec.name.c_str(), m->config.name.c_str(),
              m->weights->Describe().c_str(), spec.device.c_str());
  std::fflush(stdout);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<engine::ForwardBackend>> backend =
      options.make_backend({m->config, *m->weights, *kv_blocks, spec.device, *stages, *tp,
                            context.system});
  if (!backend.ok()) {
    return absl::Status(backend.status().code(), absl::StrCat(spec.where, " (", spec.name,
                                                              "): ", backend.status().message()));
  }
  std::printf("%s: loaded in %.1f s, %d KV blocks of 16 tokens\n", spec.name.c_str(),
              absl::ToDoubleSeconds(absl::Now() - start), (*backend)->num_kv_blocks());
  std::fflush(stdout);
  return backend;
}

absl::StatusOr<caf::actor> StartPrefill(const ServingRoleOptions& options,
                                        const RoleContext& context) {
  const ActorSpec& spec = context.spec;
  instance::PrefillInstanceOptions prefill;
  prefill.name = spec.name;
  absl::StatusOr<int> tokens = IntAtLeast(spec, "max_batch_tokens", prefill.max_batch_tokens, 1);
  if (!tokens.ok()) return tokens.status();
  absl::StatusOr<int> requests =
      IntAtLeast(spec, "max_batch_requests", prefill.max_batch_requests, 1);
  if (!requests.ok()) return requests.status();
  absl::StatusOr<std::unique_ptr<engine::ForwardBackend>> backend = Backend(options, context);
  if (!backend.ok()) return backend.status();
  prefill.backend = *std::move(backend);
  if (options.make_transports) prefill.transports = options.make_transports();
  prefill.max_batch_tokens = *tokens;
  prefill.max_batch_requests = *requests;
  return instance::SpawnPrefillInstance(context.system, std::move(prefill));
}

absl::StatusOr<caf::actor> StartEngine(const ServingRoleOptions& options,
                                       const RoleContext& context, bool decode_role) {
  const ActorSpec& spec = context.spec;
  instance::ColocatedInstanceOptions engine;
  engine.name = spec.name;
  absl::StatusOr<int> tokens =
      IntAtLeast(spec, "max_batch_tokens", engine.batcher.max_batch_tokens, 1);
  if (!tokens.ok()) return tokens.status();
  absl::StatusOr<int> requests =
      IntAtLeast(spec, "max_batch_requests", engine.batcher.max_batch_requests, 1);
  if (!requests.ok()) return requests.status();
  absl::StatusOr<int> swap_blocks = IntAtLeast(spec, "swap_blocks", 0, 0);
  if (!swap_blocks.ok()) return swap_blocks.status();
  absl::StatusOr<std::string> preemption_name = StringParam(spec, "preemption", "");
  if (!preemption_name.ok()) return preemption_name.status();
  absl::StatusOr<engine::Preemption> preemption =
      engine::ResolvePreemption(*preemption_name, *swap_blocks, decode_role);
  if (!preemption.ok()) {
    return ParamError(spec, "preemption", std::string(preemption.status().message()));
  }
  absl::StatusOr<bool> chunked = BoolParam(spec, "chunked_prefill", false);
  if (!chunked.ok()) return chunked.status();
  absl::StatusOr<std::string> transport = StringParam(spec, "kv_transport", "auto");
  if (!transport.ok()) return transport.status();
  absl::StatusOr<uint32_t> mask = transfer::KvTransportMask(*transport);
  if (!mask.ok()) return ParamError(spec, "kv_transport", std::string(mask.status().message()));
  absl::StatusOr<std::unique_ptr<engine::ForwardBackend>> backend = Backend(options, context);
  if (!backend.ok()) return backend.status();
  engine.backend = *std::move(backend);
  if (options.make_transports) engine.transports = options.make_transports();
  engine.kv_transport_mask = *mask;
  engine.batcher.max_batch_tokens = *tokens;
  engine.batcher.max_batch_requests = *requests;
  engine.batcher.chunked_prefill = *chunked;
  engine.batcher.preemption = *preemption;
  engine.num_cpu_blocks = *swap_blocks;
  absl::StatusOr<caf::actor> spawned =
      instance::SpawnColocatedInstance(context.system, std::move(engine));
  if (!spawned.ok() && absl::StrContains(spawned.status().message(), "kv_transport")) {
    return ParamError(spec, "kv_transport", std::string(spawned.status().message()));
  }
  return spawned;
}

// Frontend is what a server actor owns: the tokenizer and the HTTP server (stopped when the
// actor goes, by the server's destructor).
struct Frontend {
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::unique_ptr<frontend::OpenAiServer> server;
};

struct ServerState {
  std::shared_ptr<Frontend> frontend;
};

// Server is the server role's actor: it owns the HTTP server, answers its port, and passes
// router_stats_atom on to the router.
caf::behavior Server(caf::stateful_actor<ServerState>* self, std::shared_ptr<Frontend> frontend,
                     caf::actor router, int port) {
  self->state.frontend = std::move(frontend);
  self->link_to(router);  // the router goes with the server, and a dead router takes it down
  return {
      [self, router](instance::router_stats_atom a) { return self->delegate(router, a); },
      [port](actors::port_atom) { return port; },
  };
}

absl::StatusOr<caf::actor> StartServer(const ServingRoleOptions& options,
                                       const RoleContext& context) {
  const ActorSpec& spec = context.spec;
  absl::StatusOr<Model> m = ModelParams(spec);  // the model's name and context
  if (!m.ok()) return m.status();
  absl::StatusOr<std::string> tokenizer_path =
      StringParam(spec, "tokenizer", options.default_tokenizer);
  if (!tokenizer_path.ok()) return tokenizer_path.status();
  absl::StatusOr<tokenizer::Tokenizer> tokenizer = tokenizer::OpenTokenizer(*tokenizer_path);
  if (!tokenizer.ok()) return ParamError(spec, "tokenizer", std::string(tokenizer.status().message()));
  if (tokenizer->vocab_size() > m->config.vocab_size) {
    return ParamError(spec, "tokenizer",
                      absl::StrCat("has ", tokenizer->vocab_size(), " tokens but model ",
                                   m->config.name, " only ", m->config.vocab_size));
  }
  instance::RouterOptions routing;
  absl::StatusOr<std::vector<std::string>> prefill = NamesParam(spec, "prefill");
  if (!prefill.ok()) return prefill.status();
  absl::StatusOr<std::vector<std::string>> decode = NamesParam(spec, "decode");
  if (!decode.ok()) return decode.status();
  if (prefill->empty()) {
    return ParamError(spec, "prefill",
                      "name the prefill (or colocated) instances, e.g. \"n1/prefill0,n1/prefill1\"");
  }
  routing.prefill_names = *std::move(prefill);
  routing.decode_names = *std::move(decode);
  routing.directory = context.directory;
  absl::StatusOr<int> lookup_s = IntAtLeast(spec, "lookup_timeout_s", 600, 1);
  if (!lookup_s.ok()) return lookup_s.status();
  routing.lookup_timeout = absl::Seconds(*lookup_s);

  frontend::OpenAiServerOptions serving;
  serving.model_name = m->config.name;
  serving.context = m->config.max_position_embeddings;
  absl::StatusOr<std::string> api_key = StringParam(spec, "api_key", "");
  if (!api_key.ok()) return api_key.status();
  serving.api_key = *api_key;
  absl::StatusOr<int> in_flight = IntAtLeast(spec, "max_in_flight", serving.max_in_flight, 1);
  if (!in_flight.ok()) return in_flight.status();
  serving.max_in_flight = *in_flight;
  absl::StatusOr<std::string> host = StringParam(spec, "host", "127.0.0.1");
  if (!host.ok()) return host.status();
  absl::StatusOr<int> port = IntAtLeast(spec, "port", 8000, 0);
  if (!port.ok()) return port.status();

  absl::StatusOr<caf::actor> router = instance::SpawnRouter(context.system, std::move(routing));
  if (!router.ok()) return ParamError(spec, "prefill", std::string(router.status().message()));
  auto front = std::make_shared<Frontend>();
  front->tokenizer = std::make_unique<tokenizer::Tokenizer>(*std::move(tokenizer));
  front->server = std::make_unique<frontend::OpenAiServer>(context.system, *router,
                                                           front->tokenizer.get(), serving);
  absl::StatusOr<int> bound = front->server->Start(*host, *port);
  if (!bound.ok()) {
    caf::anon_send_exit(*router, caf::exit_reason::user_shutdown);
    return ParamError(spec, "port", std::string(bound.status().message()));
  }
  const std::string url = absl::StrCat("http://", *host, ":", *bound);
  std::printf("Troupe is serving %s (%s) at %s\n", m->config.name.c_str(),
              m->weights->Describe().c_str(), url.c_str());
  std::printf(
      "  try: curl %s/v1/completions -H 'Content-Type: application/json'%s "
      "-d '{\"prompt\": \"Hello, my name is\", \"max_tokens\": 16}'\n",
      url.c_str(), serving.api_key.empty() ? "" : " -H 'Authorization: Bearer <key>'");
  std::fflush(stdout);
  // Detached: stopping the HTTP server on exit waits for its connections to close.
  return context.system.spawn<caf::detached>(Server, std::move(front), *router, *bound);
}

const std::map<std::string, std::string>& ModelParamHelp() {
  static const auto* help = new std::map<std::string, std::string>{
      {"model", "model preset (default tiny)"},
      {"weights", "safetensors checkpoint (file or directory); default: seeded random weights"},
      {"seed", "seed of the random weights (default 0); alike on every instance"},
      {"kv_blocks", "KV cache blocks of 16 tokens (default 256)"},
      {"pipeline_stages", "stage actors the layers are split over (default 1)"},
      {"tensor_parallel",
       "Megatron ranks the heads and FFN are split over (default 1; on GPUs: NCCL all-reduce, "
       "or in-process for ranks that share a GPU)"},
  };
  return *help;
}

std::map<std::string, std::string> With(std::map<std::string, std::string> params) {
  for (const auto& [key, help] : ModelParamHelp()) params.emplace(key, help);
  return params;
}

}  // namespace

void AddServingRoles(actors::RoleCatalog& catalog, ServingRoleOptions options) {
  if (!options.make_backend) {
    options.make_backend = [](const BackendRequest&)
        -> absl::StatusOr<std::unique_ptr<engine::ForwardBackend>> {
      return absl::FailedPreconditionError("this binary was built without a forward backend");
    };
  }
  const std::map<std::string, std::string> engine_params = {
      {"max_batch_tokens", "tokens per step (default 2048)"},
      {"max_batch_requests", "requests per step (default 256)"},
      {"swap_blocks", "host KV blocks for swapped-out requests (default 0: none)"},
      {"preemption", "swap or recompute (default: swap for decode with swap_blocks > 0)"},
  };
  catalog.Add({"prefill",
               "DistServe's prefill instance: FCFS batches, first token at once, KV kept until "
               "pulled",
               With({{"max_batch_tokens", "tokens per prefill batch (default 8192)"},
                     {"max_batch_requests", "requests per prefill batch (default 128)"}}),
               [options](const RoleContext& c) { return StartPrefill(options, c); }});
  std::map<std::string, std::string> decode_params = engine_params;
  decode_params["kv_transport"] =
      "how KV may arrive: auto (the best the pair supports: local, cuda_ipc, nccl, then "
      "bytes), or one of local, cuda_ipc, nccl, bytes (default auto)";
  catalog.Add({"decode", "DistServe's decode instance: pulls KV, continuous batching",
               With(decode_params),
               [options](const RoleContext& c) { return StartEngine(options, c, true); }});
  std::map<std::string, std::string> colocated_params = engine_params;
  colocated_params["chunked_prefill"] = "Sarathi-style chunked prefill (default false)";
  catalog.Add({"colocated", "vLLM-style instance: prefill and decode on one model copy",
               With(colocated_params),
               [options](const RoleContext& c) { return StartEngine(options, c, false); }});
  catalog.Add(
      {"server",
       "the OpenAI-compatible HTTP server with the router over the instances",
       {{"model", "the served model's preset: its name and context (default tiny)"},
        {"weights", "only described in the banner"},
        {"seed", "only described in the banner"},
        {"tokenizer", "tokenizer file or directory (default: GPT-2's from tools/setup.sh)"},
        {"prefill", "comma-separated \"node/name\" of prefill (or colocated) instances"},
        {"decode", "comma-separated \"node/name\" of decode instances"},
        {"host", "address to listen on (default 127.0.0.1)"},
        {"port", "port to listen on (default 8000; 0: ephemeral)"},
        {"api_key", "require \"Authorization: Bearer <key>\" (default: none)"},
        {"max_in_flight", "requests in flight before 429 (default 256)"},
        {"lookup_timeout_s", "how long to wait for each instance to come up (default 600)"}},
       [options](const RoleContext& c) { return StartServer(options, c); }});
}

}  // namespace troupe::serving::cluster
