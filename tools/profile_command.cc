#include "tools/profile_command.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "gpu/dtype.h"
#include "serving/placement/profile.h"
#include "serving/placement/profiler.h"

ABSL_FLAG(std::string, device, "", "`profile`: cpu or cuda:N (default: the binary's).");
ABSL_FLAG(std::string, tensor_parallel, "1",
          "`profile`: tensor-parallel degrees to measure, comma-separated (e.g. 1,2,4).");
ABSL_FLAG(std::string, prefill_batches, "", "`profile`: prefill batch sizes (default 1,2,4,8).");
ABSL_FLAG(std::string, prefill_lengths, "",
          "`profile`: prompt lengths (default 32,128,256,512,1024,2000).");
ABSL_FLAG(int, max_prefill_tokens, 0, "`profile`: largest prefill batch in tokens (default 4096).");
ABSL_FLAG(std::string, decode_batches, "",
          "`profile`: decode batch sizes (default 1,2,4,8,16,32,64,128).");
ABSL_FLAG(std::string, decode_contexts, "",
          "`profile`: decode context lengths (default 128,512,1024,1900).");
ABSL_FLAG(int, profile_repeats, 0, "`profile`: timed steps per point, median kept (default 3).");
ABSL_FLAG(std::string, profile_out, "", "`profile`: where to write the profile JSON.");

namespace troupe {
namespace {

using serving::placement::Profile;
using serving::placement::ProfileGrid;

int Fail(const std::string& binary, const absl::Status& status) {
  std::fprintf(stderr, "%s profile: error: %s\n", binary.c_str(),
               std::string(status.message()).c_str());
  return 1;
}

// ParseList reads a comma-separated flag into `out` (left as is when the flag is empty).
absl::Status ParseList(const char* flag, const std::string& text, std::vector<int>* out) {
  if (text.empty()) return absl::OkStatus();
  std::vector<int> values;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int value = 0;
    if (!absl::SimpleAtoi(piece, &value) || value < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", text, ": \"", piece,
                                                     "\" is not a positive integer; give a "
                                                     "comma-separated list such as 1,2,4"));
    }
    values.push_back(value);
  }
  if (values.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  }
  *out = std::move(values);
  return absl::OkStatus();
}

absl::StatusOr<ProfileGrid> GridFromFlags() {
  ProfileGrid grid;
  absl::Status status =
      ParseList("prefill_batches", absl::GetFlag(FLAGS_prefill_batches), &grid.prefill_batches);
  if (status.ok()) {
    status =
        ParseList("prefill_lengths", absl::GetFlag(FLAGS_prefill_lengths), &grid.prefill_lengths);
  }
  if (status.ok()) {
    status = ParseList("decode_batches", absl::GetFlag(FLAGS_decode_batches), &grid.decode_batches);
  }
  if (status.ok()) {
    status =
        ParseList("decode_contexts", absl::GetFlag(FLAGS_decode_contexts), &grid.decode_contexts);
  }
  if (!status.ok()) return status;
  if (const int tokens = absl::GetFlag(FLAGS_max_prefill_tokens); tokens != 0) {
    if (tokens < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--max_prefill_tokens=", tokens, " must be >= 1"));
    }
    grid.max_prefill_tokens = tokens;
  }
  if (const int repeats = absl::GetFlag(FLAGS_profile_repeats); repeats != 0) {
    if (repeats < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--profile_repeats=", repeats, " must be >= 1"));
    }
    grid.repeats = repeats;
  }
  return grid;
}

}  // namespace

int RunProfile(const ProfileCommand& command, const serving::model::ModelConfig& config,
               const serving::model::WeightSource& weights, int kv_blocks) {
  const std::string out = absl::GetFlag(FLAGS_profile_out);
  if (out.empty()) {
    return Fail(command.binary, absl::InvalidArgumentError(
                                    "--profile_out is missing; name the JSON file to write"));
  }
  absl::StatusOr<ProfileGrid> grid = GridFromFlags();
  if (!grid.ok()) return Fail(command.binary, grid.status());
  std::vector<int> degrees = {1};
  if (absl::Status s = ParseList("tensor_parallel", absl::GetFlag(FLAGS_tensor_parallel), &degrees);
      !s.ok()) {
    return Fail(command.binary, s);
  }
  std::string device = absl::GetFlag(FLAGS_device);
  if (device.empty()) device = command.binary == "troupe_gpu" ? "cuda:0" : "cpu";

  caf::actor_system_config system_config;
  caf::actor_system system{system_config};
  Profile profile;
  profile.model = config.name;
  profile.device = command.describe_device ? command.describe_device(device) : device;
  for (int tp : degrees) {
    std::fprintf(stderr, "%s profile: %s on %s, tensor_parallel %d\n", command.binary.c_str(),
                 config.name.c_str(), device.c_str(), tp);
    absl::StatusOr<std::unique_ptr<serving::engine::ForwardBackend>> backend =
        command.make_backend(serving::cluster::BackendRequest{config, weights, kv_blocks, device,
                                                              /*pipeline_stages=*/1, tp, system});
    if (!backend.ok()) return Fail(command.binary, backend.status());
    profile.dtype = gpu::DTypeName((*backend)->kv_dtype());
    absl::StatusOr<Profile> measured = serving::placement::MeasureProfile(
        **backend, config, *grid, tp, serving::placement::PrintProgressTo(stderr));
    if (!measured.ok()) return Fail(command.binary, measured.status());
    profile.samples.insert(profile.samples.end(), measured->samples.begin(),
                           measured->samples.end());
  }
  if (absl::Status written = serving::placement::WriteProfile(out, profile); !written.ok()) {
    return Fail(command.binary, written);
  }
  std::printf("%s profile: %zu samples of %s on %s written to %s\n", command.binary.c_str(),
              profile.samples.size(), config.name.c_str(), profile.device.c_str(), out.c_str());
  return 0;
}

}  // namespace troupe
