#include "serving/model/safetensors.h"

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::serving::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return std::string(::testing::TempDir()) + "/" + name;
}

std::vector<uint8_t> FloatBytes(const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

// Writes a file whose header is `header` (length prefix computed) followed by `data`.
std::string WriteRaw(const std::string& name, const std::string& header, size_t data_bytes,
                     uint64_t claimed_length = 0) {
  const std::string path = TempPath(name);
  std::ofstream out(path, std::ios::binary);
  const uint64_t length = claimed_length != 0 ? claimed_length : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(length >> (8 * i)));
  out << header << std::string(data_bytes, '\0');
  return path;
}

TEST(SafetensorsTest, WriteThenReadRoundTrips) {
  const std::string path = TempPath("round_trip.safetensors");
  const std::vector<TensorToWrite> tensors = {
      {"a.weight", TensorDType::kF32, {2, 3}, FloatBytes({1, 2, 3, 4, 5, 6})},
      {"b.bias", TensorDType::kF16, {4}, std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8}},
      {"empty", TensorDType::kBF16, {0, 5}, {}},
  };
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}}).ok());

  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_THAT(file->Names(), ElementsAre("a.weight", "b.bias", "empty"));
  EXPECT_EQ(file->metadata().at("format"), "pt");
  absl::StatusOr<TensorView> a = file->Tensor("a.weight");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->dtype, TensorDType::kF32);
  EXPECT_THAT(a->shape, ElementsAre(2, 3));
  EXPECT_EQ(a->num_elements(), 6);
  float values[6];
  std::memcpy(values, a->bytes.data(), sizeof(values));
  EXPECT_EQ(values[5], 6.0f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a->bytes.data()) % 8, 0u);  // data stays aligned
  absl::StatusOr<TensorView> b = file->Tensor("b.bias");
  ASSERT_TRUE(b.ok());
  EXPECT_THAT(std::vector<uint8_t>(b->bytes.begin(), b->bytes.end()),
              ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
  EXPECT_EQ(file->Tensor("empty")->bytes.size(), 0u);
}

TEST(SafetensorsTest, MissingTensorNamesTheFile) {
  const std::string path = TempPath("one.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"x", TensorDType::kF32, {1}, FloatBytes({1})}}).ok());
  SafetensorsFile file = *SafetensorsFile::Open(path);
  absl::Status missing = file.Tensor("y").status();
  EXPECT_TRUE(absl::IsNotFound(missing));
  EXPECT_THAT(missing.message(), HasSubstr("\"y\" is not in " + path));
}

TEST(SafetensorsTest, BadFilesAreRefusedWithTheReason) {
  EXPECT_THAT(SafetensorsFile::Open(TempPath("absent.safetensors")).status().message(),
              HasSubstr("cannot open safetensors file"));
  {
    const std::string path = TempPath("short.safetensors");
    std::ofstream(path) << "abc";
    EXPECT_THAT(SafetensorsFile::Open(path).status().message(),
                HasSubstr("shorter than the 8-byte header length"));
  }
  EXPECT_THAT(
      SafetensorsFile::Open(WriteRaw("claims.safetensors", "{}", 0, 1000)).status().message(),
      HasSubstr("the header claims 1000 bytes"));
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw("notjson.safetensors", "{nope", 0)).status().message(),
              HasSubstr("not a JSON object"));
  EXPECT_THAT(SafetensorsFile::Open(
                  WriteRaw("dtype.safetensors",
                           R"({"t": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2]}})", 2))
                  .status()
                  .message(),
              HasSubstr("tensor \"t\": dtype I8 is not supported"));
  EXPECT_THAT(SafetensorsFile::Open(
                  WriteRaw("range.safetensors",
                           R"({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8))
                  .status()
                  .message(),
              HasSubstr("lie outside the 8 bytes of data"));
  EXPECT_THAT(SafetensorsFile::Open(
                  WriteRaw("size.safetensors",
                           R"({"t": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}})", 8))
                  .status()
                  .message(),
              HasSubstr("holds 8 bytes but shape [3] of F16 needs 6"));
  EXPECT_THAT(SafetensorsFile::Open(WriteRaw("fields.safetensors", R"({"t": {"dtype": "F16"}})", 0))
                  .status()
                  .message(),
              HasSubstr("needs \"dtype\", \"shape\" and two \"data_offsets\""));
  EXPECT_THAT(SafetensorsFile::Open(
                  WriteRaw("negative.safetensors",
                           R"({"t": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 0]}})", 0))
                  .status()
                  .message(),
              HasSubstr("not a non-negative integer"));
}

TEST(SafetensorsTest, WriterRefusesASizeThatDoesNotMatchTheShape) {
  absl::Status status = WriteSafetensors(TempPath("w.safetensors"),
                                         {{"t", TensorDType::kF32, {2, 2}, FloatBytes({1, 2})}});
  EXPECT_THAT(status.message(), HasSubstr("tensor \"t\": 8 bytes for shape [2, 2] of F32"));
}

}  // namespace
}  // namespace troupe::serving::model
