// Helpers for kernel tests: random inputs, device arrays, poisoned outputs, relative error.
//
// The rules every kernel test follows (issue #3): inputs are random (never zeros); outputs are
// poisoned (all bits set: NaN in fp32, fp16 and bf16) before each run, so an element the kernel
// did not write shows up as NaN; the check is the relative error ||out - ref|| / ||ref|| against
// a CPU reference in double precision, under Tolerance(dtype); NaN never passes.
//
//   std::vector<float> x = RandomFloats(n, /*seed=*/1);
//   DeviceArray input = *DeviceArray::FromHost(DType::kFloat16, x);
//   DeviceArray output = *DeviceArray::Poisoned(DType::kFloat16, n);
//   ... run the kernel ...
//   EXPECT_LT(RelativeError(*output.ToHost(), reference), Tolerance(DType::kFloat16));
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/dtype.h"

namespace troupe::gpu::testing {

// RandomFloats draws n values from N(mean, stddev) with a fixed seed.
std::vector<float> RandomFloats(size_t n, uint64_t seed, float stddev = 1.0f, float mean = 0.0f);

// RandomInts draws n integers uniformly from [low, high].
std::vector<int32_t> RandomInts(size_t n, uint64_t seed, int32_t low, int32_t high);

// Quantized rounds each value through `dtype` (what the kernel actually sees as input).
std::vector<float> Quantized(DType dtype, const std::vector<float>& values);

// RelativeError is ||out - ref|| / ||ref|| in double; NaN or Inf anywhere in `out` gives NaN.
double RelativeError(const std::vector<float>& out, const std::vector<double>& ref);

// Tolerance for outputs of type `dtype` computed from operands of that type: 1e-5 for fp32,
// 5e-3 for fp16 and 1e-2 for bf16.
double Tolerance(DType dtype);

// DeviceArray is a device allocation for tests, with its element type.
class DeviceArray {
 public:
  static absl::StatusOr<DeviceArray> FromHost(DType dtype, const std::vector<float>& values);
  static absl::StatusOr<DeviceArray> FromInts(const std::vector<int32_t>& values);
  // Poisoned allocates `count` elements with every bit set.
  static absl::StatusOr<DeviceArray> Poisoned(DType dtype, size_t count);

  DeviceArray(DeviceArray&& other) noexcept;
  DeviceArray& operator=(DeviceArray&& other) noexcept;
  DeviceArray(const DeviceArray&) = delete;
  ~DeviceArray();

  absl::StatusOr<std::vector<float>> ToHost() const;
  absl::StatusOr<std::vector<int32_t>> IntsToHost() const;
  // Poison sets every bit of the array again.
  absl::Status Poison();

  void* data() const { return data_; }
  size_t count() const { return count_; }
  DType dtype() const { return dtype_; }

 private:
  DeviceArray(DType dtype, size_t count, size_t element_bytes, void* data)
      : dtype_(dtype), count_(count), element_bytes_(element_bytes), data_(data) {}
  DType dtype_;
  size_t count_;
  size_t element_bytes_;
  void* data_;
};

// HasCudaDevice is true when this process can use a GPU; kernel tests skip (with a message)
// otherwise.
bool HasCudaDevice();

}  // namespace troupe::gpu::testing
