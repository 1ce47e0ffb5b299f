#include "serving/placement/profile.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace troupe::serving::placement {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

std::string WriteText(const std::string& name, const std::string& text) {
  const std::string path = TempPath(name);
  std::ofstream(path) << text;
  return path;
}

TEST(ProfileTest, RoundTrips) {
  Profile profile{
      "opt-13b",
      "NVIDIA H200",
      "fp16",
      {{Phase::kPrefill, 2, 4, 2048, 1048576, 0.0213}, {Phase::kDecode, 1, 64, 32768, 0, 0.0145}}};
  const std::string path = TempPath("round_trip.json");
  ASSERT_TRUE(WriteProfile(path, profile).ok());
  absl::StatusOr<Profile> read = ReadProfile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->model, "opt-13b");
  EXPECT_EQ(read->device, "NVIDIA H200");
  EXPECT_EQ(read->dtype, "fp16");
  ASSERT_EQ(read->samples.size(), 2u);
  EXPECT_EQ(read->samples[0].phase, Phase::kPrefill);
  EXPECT_EQ(read->samples[0].tensor_parallel, 2);
  EXPECT_EQ(read->samples[0].tokens_squared, 1048576);
  EXPECT_EQ(read->samples[1].phase, Phase::kDecode);
  EXPECT_DOUBLE_EQ(read->samples[1].seconds, 0.0145);
}

TEST(ProfileTest, BadFilesAreErrorsNamingTheFileAndTheField) {
  absl::StatusOr<Profile> missing = ReadProfile(TempPath("no_such_profile.json"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  const auto expect_invalid = [](const std::string& name, const std::string& text,
                                 const std::string& what) {
    const std::string path = WriteText(name, text);
    absl::StatusOr<Profile> profile = ReadProfile(path);
    ASSERT_FALSE(profile.ok()) << name;
    EXPECT_EQ(profile.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(profile.status().message(), path)) << profile.status();
    EXPECT_TRUE(absl::StrContains(profile.status().message(), what)) << profile.status();
  };
  const std::string head = R"({"model": "tiny", "device": "cpu", "dtype": "fp32", )";
  expect_invalid("not_json.json", "{\"model\": ", "not valid JSON");
  expect_invalid("no_model.json", R"({"device": "cpu", "dtype": "fp32", "samples": []})",
                 "\"model\" must be a string");
  expect_invalid("no_samples.json", head + R"("samples": []})", "\"samples\" must be");
  expect_invalid("bad_phase.json",
                 head + R"("samples": [{"phase": "both", "tensor_parallel": 1, "batch": 1,
                    "tokens": 8, "tokens_squared": 64, "seconds": 0.1}]})",
                 "samples[0].phase");
  expect_invalid("bad_batch.json",
                 head + R"("samples": [{"phase": "decode", "tensor_parallel": 1, "batch": 1,
                    "tokens": 8, "tokens_squared": 0, "seconds": 0.1},
                   {"phase": "decode", "tensor_parallel": 1, "batch": 0,
                    "tokens": 8, "tokens_squared": 0, "seconds": 0.1}]})",
                 "samples[1].batch must be an integer >= 1");
  expect_invalid("bad_seconds.json",
                 head + R"("samples": [{"phase": "decode", "tensor_parallel": 1, "batch": 1,
                    "tokens": 8, "tokens_squared": 0, "seconds": -1}]})",
                 "samples[0].seconds must be a number > 0");
}

TEST(ProfileTest, AnUnwritablePathIsAnError) {
  absl::Status status = WriteProfile("/nonexistent_dir/profile.json", Profile{});
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(), "/nonexistent_dir/profile.json")) << status;
}

}  // namespace
}  // namespace troupe::serving::placement
