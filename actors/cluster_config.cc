#include "actors/cluster_config.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "actors/errors.h"
#include "toml++/toml.h"

namespace troupe::actors {
namespace {

const std::vector<std::string> kTopLevelKeys = {"cluster", "node", "actor"};
const std::vector<std::string> kClusterKeys = {"name"};
const std::vector<std::string> kNodeKeys = {
    "name", "host", "port", "gpus", "scheduler_threads", "scheduler_policy", "torch_threads",
    "metrics_port"};
const std::vector<std::string> kActorKeys = {
    "name", "role", "node", "device", "restart", "max_restarts", "restart_window_s", "params"};

// EditDistance is the Levenshtein distance, for "did you mean" hints.
size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

bool IsValidName(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

// Problems collects every validation failure so the user sees them all at once.
class Problems {
 public:
  explicit Problems(std::string source) : source_(std::move(source)) {}

  void Add(const std::string& where, const std::string& problem, const std::string& fix) {
    lines_.push_back(absl::StrCat(where, ": ", problem, "; ", fix));
  }

  void CheckKeys(const toml::table& table, const std::string& where,
                 const std::vector<std::string>& allowed) {
    for (const auto& [key, value] : table) {
      const std::string name(key.str());
      if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) continue;
      std::string best;
      size_t best_distance = 3;  // Suggest only close matches.
      for (const std::string& candidate : allowed) {
        size_t d = EditDistance(name, candidate);
        if (d < best_distance) best_distance = d, best = candidate;
      }
      std::string fix = best.empty() ? "" : absl::StrCat("did you mean ", Quoted(best), "? ");
      absl::StrAppend(&fix, "allowed keys: ", absl::StrJoin(allowed, ", "));
      Add(where.empty() ? name : absl::StrCat(where, ".", name), "unknown key", fix);
    }
  }

  absl::Status ToStatus() const {
    if (lines_.empty()) return absl::OkStatus();
    std::string message =
        lines_.size() == 1
            ? absl::StrCat("invalid cluster config ", source_, ": ", lines_[0])
            : absl::StrCat("invalid cluster config ", source_, " (", lines_.size(),
                           " problems):\n  ", absl::StrJoin(lines_, "\n  "));
    return absl::InvalidArgumentError(message);
  }

 private:
  std::string source_;
  std::vector<std::string> lines_;
};

std::string TypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

// Readers for typed keys. Each returns false (and records the problem) on a type mismatch.
bool ReadString(const toml::table& t, const char* key, const std::string& where,
                Problems& problems, std::string* out, bool required) {
  const toml::node* node = t.get(key);
  if (node == nullptr) {
    if (required) {
      problems.Add(absl::StrCat(where, ".", key), "missing",
                   absl::StrCat("add ", key, " = \"...\""));
    }
    return !required;
  }
  if (!node->is_string()) {
    problems.Add(absl::StrCat(where, ".", key), absl::StrCat("is ", TypeName(*node)),
                 "write it as a quoted string");
    return false;
  }
  *out = **node->as_string();
  return true;
}

bool ReadInt(const toml::table& t, const char* key, const std::string& where, Problems& problems,
             int64_t lo, int64_t hi, int64_t* out) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return true;
  if (!node->is_integer()) {
    problems.Add(absl::StrCat(where, ".", key), absl::StrCat("is ", TypeName(*node)),
                 absl::StrCat("write an integer between ", lo, " and ", hi));
    return false;
  }
  int64_t value = **node->as_integer();
  if (value < lo || value > hi) {
    problems.Add(absl::StrCat(where, ".", key, " = ", value), "out of range",
                 absl::StrCat("use an integer between ", lo, " and ", hi));
    return false;
  }
  *out = value;
  return true;
}

void ParseNode(const toml::table& t, const std::string& where, Problems& problems,
               NodeSpec* node) {
  node->where = where;
  problems.CheckKeys(t, where, kNodeKeys);
  if (ReadString(t, "name", where, problems, &node->info.name, true) &&
      !IsValidName(node->info.name)) {
    problems.Add(absl::StrCat(where, ".name = ", Quoted(node->info.name)), "not a valid name",
                 "use letters, digits, '_' and '-' only");
  }
  ReadString(t, "host", where, problems, &node->info.host, true);
  int64_t port = 0;
  if (ReadInt(t, "port", where, problems, 0, 65535, &port)) {
    node->info.port = static_cast<uint16_t>(port);
  }
  int64_t metrics_port = node->metrics_port;
  if (ReadInt(t, "metrics_port", where, problems, -1, 65535, &metrics_port)) {
    node->metrics_port = static_cast<int>(metrics_port);
  }
  int64_t threads = 0;
  if (ReadInt(t, "scheduler_threads", where, problems, 0, 1024, &threads)) {
    node->scheduler_threads = static_cast<int>(threads);
  }
  threads = 0;
  if (ReadInt(t, "torch_threads", where, problems, 0, 1024, &threads)) {
    node->torch_threads = static_cast<int>(threads);
  }
  if (ReadString(t, "scheduler_policy", where, problems, &node->scheduler_policy, false) &&
      !node->scheduler_policy.empty() && node->scheduler_policy != "sharing" &&
      node->scheduler_policy != "stealing") {
    problems.Add(absl::StrCat(where, ".scheduler_policy = ", Quoted(node->scheduler_policy)),
                 "unknown policy", "use \"sharing\" or \"stealing\"");
  }
  if (const toml::node* gpus = t.get("gpus")) {
    const std::string key = absl::StrCat(where, ".gpus");
    if (!gpus->is_array()) {
      problems.Add(key, absl::StrCat("is ", TypeName(*gpus)),
                   "write a list of device indices, e.g. gpus = [0, 1]");
      return;
    }
    std::set<int64_t> seen;
    for (const toml::node& element : *gpus->as_array()) {
      if (!element.is_integer() || **element.as_integer() < 0) {
        problems.Add(key, "holds something other than a device index",
                     "write non-negative integers, e.g. gpus = [0, 1]");
        return;
      }
      int64_t gpu = **element.as_integer();
      if (!seen.insert(gpu).second) {
        problems.Add(key, absl::StrCat("lists GPU ", gpu, " twice"), "list each device once");
        return;
      }
      node->info.gpus.push_back(static_cast<int32_t>(gpu));
    }
  }
}

void ParseParams(const toml::table& t, const std::string& where, Problems& problems,
                 std::map<std::string, ParamValue>* params) {
  for (const auto& [key, value] : t) {
    const std::string name(key.str());
    if (value.is_boolean()) {
      (*params)[name] = **value.as_boolean();
    } else if (value.is_integer()) {
      (*params)[name] = **value.as_integer();
    } else if (value.is_floating_point()) {
      (*params)[name] = **value.as_floating_point();
    } else if (value.is_string()) {
      (*params)[name] = **value.as_string();
    } else {
      problems.Add(absl::StrCat(where, ".params.", name), absl::StrCat("is ", TypeName(value)),
                   "role parameters are booleans, integers, floats or strings");
    }
  }
}

void ParseActor(const toml::table& t, const std::string& where, Problems& problems,
                ActorSpec* actor) {
  actor->where = where;
  problems.CheckKeys(t, where, kActorKeys);
  if (ReadString(t, "name", where, problems, &actor->name, true) && !IsValidName(actor->name)) {
    problems.Add(absl::StrCat(where, ".name = ", Quoted(actor->name)), "not a valid name",
                 "use letters, digits, '_' and '-' only");
  }
  ReadString(t, "role", where, problems, &actor->role, true);
  ReadString(t, "node", where, problems, &actor->node, true);
  if (ReadString(t, "device", where, problems, &actor->device, false)) {
    if (absl::StatusOr<int> device = ParseDevice(actor->device); !device.ok()) {
      problems.Add(absl::StrCat(where, ".device = ", Quoted(actor->device)),
                   "not a device", "write \"cpu\" or \"cuda:N\" (N a GPU index of the node)");
    }
  }
  std::string restart;
  if (ReadString(t, "restart", where, problems, &restart, false) && !restart.empty()) {
    if (restart == "stop") {
      actor->restart.kind = RestartPolicy::Kind::kStop;
    } else if (restart == "restart") {
      actor->restart.kind = RestartPolicy::Kind::kRestart;
    } else if (restart == "escalate") {
      actor->restart.kind = RestartPolicy::Kind::kEscalate;
    } else {
      problems.Add(absl::StrCat(where, ".restart = ", Quoted(restart)), "unknown policy",
                   "use \"stop\", \"restart\" or \"escalate\"");
    }
  }
  int64_t max_restarts = actor->restart.max_restarts;
  if (ReadInt(t, "max_restarts", where, problems, 0, 1000000, &max_restarts)) {
    actor->restart.max_restarts = static_cast<int>(max_restarts);
  }
  if (const toml::node* window = t.get("restart_window_s")) {
    std::optional<double> seconds = window->value<double>();
    if (!seconds || *seconds <= 0) {
      problems.Add(absl::StrCat(where, ".restart_window_s"), "not a positive number",
                   "write the window in seconds, e.g. restart_window_s = 5.0");
    } else {
      actor->restart.window = absl::Seconds(*seconds);
    }
  }
  if (const toml::node* params = t.get("params")) {
    if (!params->is_table()) {
      problems.Add(absl::StrCat(where, ".params"), absl::StrCat("is ", TypeName(*params)),
                   "write it as a table: [actor.params]");
    } else {
      ParseParams(*params->as_table(), where, problems, &actor->params);
    }
  }
}

// ArrayOfTables returns the [[name]] entries of `root`, recording a problem if `name` holds
// something else.
std::vector<const toml::table*> ArrayOfTables(const toml::table& root, const char* name,
                                              Problems& problems) {
  std::vector<const toml::table*> tables;
  const toml::node* node = root.get(name);
  if (node == nullptr) return tables;
  const toml::array* array = node->as_array();
  bool ok = array != nullptr;
  if (ok) {
    for (const toml::node& element : *array) {
      if (!element.is_table()) ok = false;
      if (ok) tables.push_back(element.as_table());
    }
  }
  if (!ok) {
    problems.Add(name, "is not a list of tables",
                 absl::StrCat("write each entry under its own [[", name, "]] header"));
    tables.clear();
  }
  return tables;
}

void CheckCrossReferences(ClusterConfig& config, Problems& problems) {
  if (config.nodes.empty()) {
    problems.Add("node", "no nodes declared", "declare at least one [[node]] with a name and a host");
  }
  std::map<std::string, const NodeSpec*> by_name;
  std::map<std::pair<std::string, int>, std::string> ports;  // (host, port) -> "where.key"
  auto claim_port = [&](const NodeSpec& node, int port, const char* key) {
    if (port <= 0) return;  // 0 = ephemeral, -1 = disabled: never clash.
    std::string here = absl::StrCat(node.where, ".", key, " = ", port);
    auto [it, inserted] = ports.emplace(std::make_pair(node.info.host, port), here);
    if (!inserted) {
      problems.Add(here, absl::StrCat("port clash with ", it->second, " on host ",
                                      Quoted(node.info.host)),
                   "give each node and metrics endpoint on one host its own port, or use 0");
    }
  };
  for (const NodeSpec& node : config.nodes) {
    if (node.info.name.empty()) continue;
    auto [it, inserted] = by_name.emplace(node.info.name, &node);
    if (!inserted) {
      problems.Add(absl::StrCat(node.where, ".name = ", Quoted(node.info.name)),
                   absl::StrCat("duplicate node (also ", it->second->where, ")"),
                   "give each [[node]] a unique name");
    }
    claim_port(node, node.info.port, "port");
    claim_port(node, node.metrics_port, "metrics_port");
  }
  std::set<std::pair<std::string, std::string>> actor_names;  // (node, actor)
  std::vector<std::string> node_names;
  for (const auto& [name, node] : by_name) node_names.push_back(Quoted(name));
  for (ActorSpec& actor : config.actors) {
    if (actor.node.empty()) continue;
    auto node = by_name.find(actor.node);
    if (node == by_name.end()) {
      problems.Add(absl::StrCat(actor.where, ".node = ", Quoted(actor.node)),
                   "no such node",
                   node_names.empty()
                       ? std::string("declare a [[node]] first")
                       : absl::StrCat("use one of ", absl::StrJoin(node_names, ", "),
                                      " or declare [[node]] name = ", Quoted(actor.node)));
      continue;
    }
    if (!actor.name.empty() && !actor_names.emplace(actor.node, actor.name).second) {
      problems.Add(absl::StrCat(actor.where, ".name = ", Quoted(actor.name)),
                   absl::StrCat("duplicate actor on node ", Quoted(actor.node)),
                   "give each actor on a node a unique name");
    }
    absl::StatusOr<int> device = ParseDevice(actor.device);
    if (device.ok() && *device >= 0) {
      const std::vector<int32_t>& gpus = node->second->info.gpus;
      if (std::find(gpus.begin(), gpus.end(), *device) == gpus.end()) {
        problems.Add(absl::StrCat(actor.where, ".device = ", Quoted(actor.device)),
                     absl::StrCat("node ", Quoted(actor.node), " does not list GPU ", *device),
                     absl::StrCat("add ", *device, " to its gpus, or use \"cpu\""));
      }
    }
  }
}

}  // namespace

const NodeSpec* ClusterConfig::FindNode(const std::string& name) const {
  for (const NodeSpec& node : nodes) {
    if (node.info.name == name) return &node;
  }
  return nullptr;
}

std::vector<const ActorSpec*> ClusterConfig::ActorsOn(const std::string& name) const {
  std::vector<const ActorSpec*> out;
  for (const ActorSpec& actor : actors) {
    if (actor.node == name) out.push_back(&actor);
  }
  return out;
}

absl::StatusOr<int> ParseDevice(const std::string& device) {
  if (device == "cpu") return -1;
  absl::string_view rest = device;
  int index = 0;
  if (absl::ConsumePrefix(&rest, "cuda:") && !rest.empty() &&
      std::all_of(rest.begin(), rest.end(), [](char c) { return absl::ascii_isdigit(c); }) &&
      absl::SimpleAtoi(rest, &index)) {
    return index;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "device ", Quoted(device), " is not a device; write \"cpu\" or \"cuda:N\""));
}

absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& text,
                                                 const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& error) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid cluster config ", source, ":", error.source().begin.line, ":",
        error.source().begin.column, ": TOML syntax error: ", std::string(error.description()),
        "; fix the syntax at that line (see https://toml.io)"));
  }
  Problems problems(source);
  problems.CheckKeys(root, "", kTopLevelKeys);
  ClusterConfig config;
  config.source = source;
  if (const toml::node* cluster = root.get("cluster")) {
    if (const toml::table* table = cluster->as_table()) {
      const std::string where = "cluster";
      problems.CheckKeys(*table, where, kClusterKeys);
      ReadString(*table, "name", where, problems, &config.name, false);
    } else {
      problems.Add("cluster", absl::StrCat("is ", TypeName(*cluster)),
                   "write it as a table: [cluster]");
    }
  }
  std::vector<const toml::table*> nodes = ArrayOfTables(root, "node", problems);
  for (size_t i = 0; i < nodes.size(); ++i) {
    config.nodes.emplace_back();
    ParseNode(*nodes[i], absl::StrCat("node[", i, "]"), problems,
              &config.nodes.back());
  }
  std::vector<const toml::table*> actors = ArrayOfTables(root, "actor", problems);
  for (size_t i = 0; i < actors.size(); ++i) {
    config.actors.emplace_back();
    ParseActor(*actors[i], absl::StrCat("actor[", i, "]"), problems,
               &config.actors.back());
  }
  CheckCrossReferences(config, problems);
  if (absl::Status status = problems.ToStatus(); !status.ok()) return status;
  return config;
}

absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    return absl::NotFoundError(absl::StrCat("cannot read cluster config ", Quoted(path),
                                            "; check the path passed to --config"));
  }
  std::stringstream text;
  text << file.rdbuf();
  return ParseClusterConfig(text.str(), path);
}

}  // namespace troupe::actors
