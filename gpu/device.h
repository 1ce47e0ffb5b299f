// Device: one CUDA device of this process and its properties; ScopedDevice: switch the calling
// thread's current device for the length of a scope.
//
// Every gpu/ type takes a device index; Device::CheckIndex is where an index is judged, so a bad
// one fails with the same message everywhere. gpu/ functions enter the device they work on with
// ScopedDevice and leave the caller's current device as it was.
//
//   absl::StatusOr<Device> gpu = Device::Get(0);
//   std::cout << gpu->name() << ": " << gpu->sm_count() << " SMs, "
//             << gpu->total_memory_bytes() << " bytes\n";
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace troupe::gpu {

class Device {
 public:
  // Count returns how many CUDA devices this process sees: 0 without a driver or a GPU.
  static int Count();

  // CheckIndex returns OK when `index` names a device of this process. A negative index is an
  // InvalidArgument; one past the devices present is a FailedPrecondition that says how many
  // this process sees (the usual cause is CUDA_VISIBLE_DEVICES).
  static absl::Status CheckIndex(int index);

  // Get reads the properties of device `index`.
  static absl::StatusOr<Device> Get(int index);

  int index() const { return index_; }
  const std::string& name() const { return name_; }
  int sm_count() const { return sm_count_; }
  size_t total_memory_bytes() const { return total_memory_bytes_; }
  // compute_capability is major * 10 + minor: 90 for an H100 or H200.
  int compute_capability() const { return compute_capability_; }

  // FreeMemoryBytes asks the driver how much of the device's memory is free now.
  absl::StatusOr<size_t> FreeMemoryBytes() const;

  // Synchronize waits for all work on the device, on every stream.
  absl::Status Synchronize() const;

 private:
  Device() = default;
  int index_ = -1;
  std::string name_;
  int sm_count_ = 0;
  size_t total_memory_bytes_ = 0;
  int compute_capability_ = 0;
};

// ScopedDevice makes a device current on the calling thread and makes the previous one current
// again when it goes out of scope.
//
//   absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device);
//   if (!scoped.ok()) return scoped.status();
//   ... CUDA calls for `device` ...
class ScopedDevice {
 public:
  // Enter checks `device` (Device::CheckIndex) and makes it current.
  static absl::StatusOr<ScopedDevice> Enter(int device);

  ScopedDevice(ScopedDevice&& other) noexcept;
  ScopedDevice& operator=(ScopedDevice&&) = delete;
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;
  ~ScopedDevice();

 private:
  explicit ScopedDevice(int previous) : previous_(previous) {}
  int previous_ = -1;  // -1: nothing to restore (moved from).
};

}  // namespace troupe::gpu
