#include "serving/placement/profile.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace troupe::serving::placement {
namespace {

using Json = nlohmann::json;

absl::Status Malformed(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": ", what, "; write it as `troupe profile --profile_out` does"));
}

// ParseSample reads samples[index]; errors name the index and the field.
absl::StatusOr<ProfileSample> ParseSample(const std::string& path, size_t index, const Json& j) {
  const std::string where = absl::StrCat("samples[", index, "]");
  if (!j.is_object()) return Malformed(path, absl::StrCat(where, " is not an object"));
  ProfileSample sample;
  const auto field = [&](const char* name) -> const Json* {
    auto it = j.find(name);
    return it == j.end() ? nullptr : &*it;
  };
  const Json* phase = field("phase");
  if (phase == nullptr || !phase->is_string() || (*phase != "prefill" && *phase != "decode")) {
    return Malformed(path, absl::StrCat(where, ".phase must be \"prefill\" or \"decode\""));
  }
  sample.phase = *phase == "prefill" ? Phase::kPrefill : Phase::kDecode;
  const auto integer = [&](const char* name, int64_t low, int64_t* out) -> absl::Status {
    const Json* v = field(name);
    if (v == nullptr || !v->is_number_integer() || v->get<int64_t>() < low) {
      return Malformed(path, absl::StrCat(where, ".", name, " must be an integer >= ", low));
    }
    *out = v->get<int64_t>();
    return absl::OkStatus();
  };
  int64_t tp = 0, batch = 0;
  absl::Status status = integer("tensor_parallel", 1, &tp);
  if (status.ok()) status = integer("batch", 1, &batch);
  if (status.ok()) status = integer("tokens", 1, &sample.tokens);
  if (status.ok()) status = integer("tokens_squared", 0, &sample.tokens_squared);
  if (!status.ok()) return status;
  sample.tensor_parallel = static_cast<int>(tp);
  sample.batch = static_cast<int>(batch);
  const Json* seconds = field("seconds");
  if (seconds == nullptr || !seconds->is_number() || !(seconds->get<double>() > 0)) {
    return Malformed(path, absl::StrCat(where, ".seconds must be a number > 0"));
  }
  sample.seconds = seconds->get<double>();
  return sample;
}

}  // namespace

const char* PhaseName(Phase phase) { return phase == Phase::kPrefill ? "prefill" : "decode"; }

absl::StatusOr<Profile> ReadProfile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        path, ": cannot open the profile; measure one with `troupe profile --profile_out`"));
  }
  std::stringstream text;
  text << in.rdbuf();
  Json j = Json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Malformed(path, "not valid JSON");
  if (!j.is_object()) return Malformed(path, "the profile is not a JSON object");
  Profile profile;
  for (const char* name : {"model", "device", "dtype"}) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) {
      return Malformed(path, absl::StrCat("\"", name, "\" must be a string"));
    }
  }
  profile.model = j["model"].get<std::string>();
  profile.device = j["device"].get<std::string>();
  profile.dtype = j["dtype"].get<std::string>();
  auto samples = j.find("samples");
  if (samples == j.end() || !samples->is_array() || samples->empty()) {
    return Malformed(path, "\"samples\" must be a non-empty array");
  }
  for (size_t i = 0; i < samples->size(); ++i) {
    absl::StatusOr<ProfileSample> sample = ParseSample(path, i, (*samples)[i]);
    if (!sample.ok()) return sample.status();
    profile.samples.push_back(*sample);
  }
  return profile;
}

absl::Status WriteProfile(const std::string& path, const Profile& profile) {
  Json samples = Json::array();
  for (const ProfileSample& s : profile.samples) {
    samples.push_back({{"phase", PhaseName(s.phase)},
                       {"tensor_parallel", s.tensor_parallel},
                       {"batch", s.batch},
                       {"tokens", s.tokens},
                       {"tokens_squared", s.tokens_squared},
                       {"seconds", s.seconds}});
  }
  const Json j = {{"model", profile.model},
                  {"device", profile.device},
                  {"dtype", profile.dtype},
                  {"samples", samples}};
  std::ofstream out(path);
  out << j.dump(1) << "\n";
  out.close();
  if (!out) {
    return absl::PermissionDeniedError(absl::StrCat(
        path, ": cannot write the profile; check the directory exists and is writable"));
  }
  return absl::OkStatus();
}

}  // namespace troupe::serving::placement
