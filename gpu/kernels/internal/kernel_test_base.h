// A test fixture and small helpers shared by the kernel tests of gpu/kernels and gpu/sampling:
// tests parameterized over the element type get a Stream on device 0, or skip with a message on
// machines without a GPU (CI compiles them; the GPU bundle runs them).
//
//   class LayerNormTest : public KernelTest {};
//   TEST_P(LayerNormTest, ...) { ... LayerNorm(dtype(), ..., stream()); ... }
//   INSTANTIATE_TEST_SUITE_P(Types, LayerNormTest, AllDTypes(), DTypeParamName);
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gpu/dtype.h"
#include "gpu/stream.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu::kernels::internal {

class KernelTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!testing::HasCudaDevice()) {
      GTEST_SKIP() << "skipped: no CUDA device in this process (GPU kernel tests run on a GPU "
                      "machine; here they are only compiled)";
    }
    absl::StatusOr<Stream> stream = Stream::Create(/*device=*/0);
    ASSERT_TRUE(stream.ok()) << stream.status();
    stream_.emplace(std::move(*stream));
  }

  DType dtype() const { return GetParam(); }
  Stream& stream() { return *stream_; }
  double tolerance() const { return testing::Tolerance(GetParam()); }

 private:
  std::optional<Stream> stream_;
};

inline auto AllDTypes() {
  return ::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16);
}

inline std::string DTypeParamName(const ::testing::TestParamInfo<DType>& info) {
  return DTypeName(info.param);
}

// ElementAt points at element `index` of a device array (to test unaligned pointers).
inline void* ElementAt(const testing::DeviceArray& array, size_t index) {
  return static_cast<char*>(array.data()) + index * SizeOf(array.dtype());
}

// Tail returns values[skip:].
inline std::vector<float> Tail(const std::vector<float>& values, size_t skip) {
  return std::vector<float>(values.begin() + skip, values.end());
}

// WithPadding returns `values` with `pad` leading copies of values[0]: uploaded, the data then
// starts `pad` elements into the allocation, i.e. off the 16-byte boundary.
inline std::vector<float> WithPadding(const std::vector<float>& values, size_t pad) {
  std::vector<float> padded(pad, values.empty() ? 1.0f : values[0]);
  padded.insert(padded.end(), values.begin(), values.end());
  return padded;
}

// Upload and Poisoned unwrap the test helpers' StatusOr, failing the test on error.
inline testing::DeviceArray Upload(DType dtype, const std::vector<float>& values) {
  absl::StatusOr<testing::DeviceArray> array = testing::DeviceArray::FromHost(dtype, values);
  EXPECT_TRUE(array.ok()) << array.status();
  return std::move(*array);
}

inline testing::DeviceArray UploadInts(const std::vector<int32_t>& values) {
  absl::StatusOr<testing::DeviceArray> array = testing::DeviceArray::FromInts(values);
  EXPECT_TRUE(array.ok()) << array.status();
  return std::move(*array);
}

inline testing::DeviceArray Poisoned(DType dtype, size_t count) {
  absl::StatusOr<testing::DeviceArray> array = testing::DeviceArray::Poisoned(dtype, count);
  EXPECT_TRUE(array.ok()) << array.status();
  return std::move(*array);
}

// Download waits for the device and returns the array's values (NaN where poison survived).
inline std::vector<float> Download(const testing::DeviceArray& array) {
  absl::StatusOr<std::vector<float>> values = array.ToHost();
  EXPECT_TRUE(values.ok()) << values.status();
  return values.ok() ? *values : std::vector<float>();
}

inline std::vector<int32_t> DownloadInts(const testing::DeviceArray& array) {
  absl::StatusOr<std::vector<int32_t>> values = array.IntsToHost();
  EXPECT_TRUE(values.ok()) << values.status();
  return values.ok() ? *values : std::vector<int32_t>();
}

// ExpectInvalidArgument checks the code and that the message names `argument`.
inline void ExpectInvalidArgument(const absl::Status& status, const std::string& argument) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(std::string(status.message()).find(argument), std::string::npos)
      << "message should name " << argument << ": " << status;
}

}  // namespace troupe::gpu::kernels::internal
