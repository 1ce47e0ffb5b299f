#include "serving/placement/cluster_toml.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace troupe::serving::placement {
namespace {

std::string Quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string NodeName(int node) { return absl::StrCat("node", node); }

std::string ActorName(const InstancePlacement& where) {
  return absl::StrCat(where.phase == Phase::kPrefill ? "prefill" : "decode", where.index);
}

}  // namespace

absl::StatusOr<std::string> ClusterToml(const Plan& plan, const ClusterSpec& cluster,
                                        const ClusterTomlOptions& options) {
  if (options.model.empty()) {
    return absl::InvalidArgumentError("ClusterTomlOptions.model is empty; name the model preset");
  }
  if (!options.hosts.empty() && static_cast<int>(options.hosts.size()) != cluster.nodes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the hosts list has ", options.hosts.size(), " address(es) but the cluster has ",
        cluster.nodes, " nodes; give one per node (--hosts=a,b,...), or none for 127.0.0.1"));
  }
  if (plan.prefill.instances < 1 || plan.decode.instances < 1) {
    return absl::FailedPreconditionError(
        "the plan has no prefill or no decode instance; plan for a cluster that holds both");
  }
  absl::StatusOr<std::vector<InstancePlacement>> placed = PlaceInstances(plan, cluster);
  if (!placed.ok()) return placed.status();
  for (const InstancePlacement& where : *placed) {
    if (where.nodes > 1) {
      const PhasePlan& phase = where.phase == Phase::kPrefill ? plan.prefill : plan.decode;
      return absl::FailedPreconditionError(
          absl::StrCat("the plan's ", PhaseName(where.phase), " instances (", phase.config.Name(),
                       ") span ", where.nodes,
                       " nodes, but troupe runs an instance's stages and ranks in one "
                       "process (serving/cluster/cuda_backends.h), so each must fit one node of ",
                       cluster.gpus_per_node,
                       " GPUs; plan with --nodes_per_instance=1 for a cluster that "
                       "starts as is"));
    }
  }
  // Which GPUs each node uses, and its actors in the order the plan lists them.
  std::map<int, std::set<int>> gpus;
  gpus[0];  // node0 hosts the server even without instances
  for (const InstancePlacement& where : *placed) {
    for (int g = 0; g < where.gpus_per_node; ++g) gpus[where.node].insert(where.first_gpu + g);
  }
  std::string out;
  for (const std::string& line : options.header) absl::StrAppend(&out, "# ", line, "\n");
  absl::StrAppend(&out, "[cluster]\nname = ", Quoted(options.cluster_name), "\n");
  for (const auto& [node, used] : gpus) {
    const std::string host = options.hosts.empty() ? "127.0.0.1" : options.hosts[node];
    absl::StrAppend(&out, "\n[[node]]\nname = ", Quoted(NodeName(node)), "\nhost = ", Quoted(host),
                    "\n");
    if (node == 0) absl::StrAppend(&out, "port = ", options.first_node_port, "\n");
    if (!used.empty()) absl::StrAppend(&out, "gpus = [", absl::StrJoin(used, ", "), "]\n");
  }
  std::vector<std::string> prefill_names, decode_names;
  for (const InstancePlacement& where : *placed) {
    (where.phase == Phase::kPrefill ? prefill_names : decode_names)
        .push_back(absl::StrCat(NodeName(where.node), "/", ActorName(where)));
  }
  absl::StrAppend(&out,
                  "\n[[actor]]\nname = \"server\"\nrole = \"server\"\nnode = ", Quoted(NodeName(0)),
                  "\n[actor.params]\nmodel = ", Quoted(options.model),
                  "\nprefill = ", Quoted(absl::StrJoin(prefill_names, ", ")),
                  "\ndecode = ", Quoted(absl::StrJoin(decode_names, ", ")),
                  "\nport = ", options.server_port, "\n");
  for (const InstancePlacement& where : *placed) {
    const bool prefill = where.phase == Phase::kPrefill;
    const PhasePlan& phase = prefill ? plan.prefill : plan.decode;
    absl::StrAppend(&out, "\n[[actor]]\nname = ", Quoted(ActorName(where)),
                    "\nrole = ", Quoted(PhaseName(where.phase)),
                    "\nnode = ", Quoted(NodeName(where.node)),
                    "\ndevice = ", Quoted(absl::StrCat("cuda:", where.first_gpu)),
                    "\n[actor.params]\nmodel = ", Quoted(options.model),
                    "\ntensor_parallel = ", phase.config.tensor_parallel,
                    "\npipeline_stages = ", phase.config.pipeline_stages,
                    "\nkv_blocks = ", phase.kv_blocks, "\n");
    if (prefill) {
      absl::StrAppend(&out, "max_batch_tokens = ", options.batching.prefill_max_batch_tokens,
                      "\nmax_batch_requests = ", options.batching.prefill_max_batch_requests, "\n");
    } else {
      absl::StrAppend(&out, "max_batch_requests = ", options.batching.decode_max_batch_requests,
                      "\n");
    }
  }
  return out;
}

}  // namespace troupe::serving::placement
