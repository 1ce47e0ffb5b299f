#include "gpu/testing/kernel_testing.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <random>
#include <utility>

#include "gpu/internal/check.h"

namespace troupe::gpu::testing {

std::vector<float> RandomFloats(size_t n, uint64_t seed, float stddev, float mean) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng);
  return values;
}

std::vector<int32_t> RandomInts(size_t n, uint64_t seed, int32_t low, int32_t high) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> uniform(low, high);
  std::vector<int32_t> values(n);
  for (int32_t& v : values) v = uniform(rng);
  return values;
}

std::vector<float> Quantized(DType dtype, const std::vector<float>& values) {
  std::vector<float> out(values.size());
  char storage[4];
  for (size_t i = 0; i < values.size(); ++i) {
    FromFloat(dtype, values[i], storage);
    out[i] = ToFloat(dtype, storage);
  }
  return out;
}

double RelativeError(const std::vector<float>& out, const std::vector<double>& ref) {
  if (out.size() != ref.size()) return std::nan("");
  double diff = 0, norm = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return std::nan("");
    const double d = static_cast<double>(out[i]) - ref[i];
    diff += d * d;
    norm += ref[i] * ref[i];
  }
  if (norm == 0) return diff == 0 ? 0 : std::nan("");
  return std::sqrt(diff / norm);
}

double Tolerance(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return 1e-5;
    case DType::kFloat16: return 5e-3;
    case DType::kBFloat16: return 1e-2;
  }
  return 0;
}

absl::StatusOr<DeviceArray> DeviceArray::Poisoned(DType dtype, size_t count) {
  void* data = nullptr;
  const size_t bytes = std::max<size_t>(1, count * SizeOf(dtype));
  TROUPE_CUDA_RETURN_IF_ERROR(cudaMalloc(&data, bytes), 0);
  DeviceArray array(dtype, count, SizeOf(dtype), data);
  if (absl::Status status = array.Poison(); !status.ok()) return status;
  return array;
}

absl::StatusOr<DeviceArray> DeviceArray::FromHost(DType dtype, const std::vector<float>& values) {
  absl::StatusOr<DeviceArray> array = Poisoned(dtype, values.size());
  if (!array.ok()) return array.status();
  std::vector<char> bytes(values.size() * SizeOf(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    FromFloat(dtype, values[i], bytes.data() + i * SizeOf(dtype));
  }
  TROUPE_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(array->data(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice), 0);
  return array;
}

absl::StatusOr<DeviceArray> DeviceArray::FromInts(const std::vector<int32_t>& values) {
  void* data = nullptr;
  const size_t bytes = std::max<size_t>(4, values.size() * 4);
  TROUPE_CUDA_RETURN_IF_ERROR(cudaMalloc(&data, bytes), 0);
  DeviceArray array(DType::kFloat32, values.size(), 4, data);
  TROUPE_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(data, values.data(), values.size() * 4, cudaMemcpyHostToDevice), 0);
  return array;
}

DeviceArray::DeviceArray(DeviceArray&& other) noexcept
    : dtype_(other.dtype_),
      count_(other.count_),
      element_bytes_(other.element_bytes_),
      data_(std::exchange(other.data_, nullptr)) {}

DeviceArray& DeviceArray::operator=(DeviceArray&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    dtype_ = other.dtype_;
    count_ = other.count_;
    element_bytes_ = other.element_bytes_;
    data_ = std::exchange(other.data_, nullptr);
  }
  return *this;
}

DeviceArray::~DeviceArray() {
  if (data_ != nullptr) cudaFree(data_);
}

absl::Status DeviceArray::Poison() {
  TROUPE_CUDA_RETURN_IF_ERROR(cudaMemset(data_, 0xff, std::max<size_t>(1, count_ * element_bytes_)),
                              0);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> DeviceArray::ToHost() const {
  std::vector<char> bytes(count_ * element_bytes_);
  TROUPE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), 0);
  TROUPE_CUDA_RETURN_IF_ERROR(cudaMemcpy(bytes.data(), data_, bytes.size(), cudaMemcpyDeviceToHost),
                              0);
  std::vector<float> values(count_);
  for (size_t i = 0; i < count_; ++i) values[i] = ToFloat(dtype_, bytes.data() + i * element_bytes_);
  return values;
}

absl::StatusOr<std::vector<int32_t>> DeviceArray::IntsToHost() const {
  std::vector<int32_t> values(count_);
  TROUPE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), 0);
  TROUPE_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(values.data(), data_, count_ * 4, cudaMemcpyDeviceToHost), 0);
  return values;
}

bool HasCudaDevice() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

}  // namespace troupe::gpu::testing
