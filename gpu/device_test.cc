// Device properties, device index checks, and ScopedDevice's restore of the current device.
#include "gpu/device.h"

#include <cuda_runtime.h>

#include "gmock/gmock.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

using ::testing::HasSubstr;

class DeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
  }
};

int CurrentDevice() {
  int device = -1;
  EXPECT_EQ(cudaGetDevice(&device), cudaSuccess);
  return device;
}

TEST_F(DeviceTest, ReportsItsProperties) {
  ASSERT_GE(Device::Count(), 1);
  absl::StatusOr<Device> device = Device::Get(0);
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->index(), 0);
  EXPECT_FALSE(device->name().empty());
  EXPECT_GT(device->sm_count(), 0);
  EXPECT_GT(device->total_memory_bytes(), size_t{1} << 30);
  EXPECT_GE(device->compute_capability(), 90) << "the build targets sm_90 (H100/H200)";
  absl::StatusOr<size_t> free_bytes = device->FreeMemoryBytes();
  ASSERT_TRUE(free_bytes.ok()) << free_bytes.status();
  EXPECT_GT(*free_bytes, 0u);
  EXPECT_LE(*free_bytes, device->total_memory_bytes());
  EXPECT_TRUE(device->Synchronize().ok());
}

TEST_F(DeviceTest, BadIndicesAreClearErrors) {
  const absl::Status negative = Device::CheckIndex(-1);
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.message(), HasSubstr("cuda:-1 is not a device index"));

  const int count = Device::Count();
  const absl::StatusOr<Device> missing = Device::Get(count);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.status().message(), HasSubstr("does not exist: this process sees"));
  EXPECT_THAT(missing.status().message(), HasSubstr("CUDA_VISIBLE_DEVICES"));
}

TEST_F(DeviceTest, ScopedDeviceRestoresTheCallersDevice) {
  const int last = Device::Count() - 1;
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  {
    absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(last);
    ASSERT_TRUE(scoped.ok()) << scoped.status();
    EXPECT_EQ(CurrentDevice(), last);
    ScopedDevice moved = *std::move(scoped);  // Only the moved-to guard restores.
  }
  EXPECT_EQ(CurrentDevice(), 0);
}

TEST_F(DeviceTest, AFailedEnterLeavesTheCurrentDeviceAlone) {
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(Device::Count());
  EXPECT_EQ(scoped.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CurrentDevice(), 0);
}

}  // namespace
}  // namespace troupe::gpu
