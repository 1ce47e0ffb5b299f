// CUDA IPC across two processes. The test binary is also the importing process: run with
// --ipc_child=HEX it maps the handle (HEX is the IpcHandle, CAF-serialized), reads the first
// half of the buffer and writes 2x + 1 of it into the second half. The parent checks that.
#include "gpu/ipc.h"

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "caf/binary_deserializer.hpp"
#include "caf/binary_serializer.hpp"
#include "gmock/gmock.h"
#include "gpu/buffer.h"
#include "gpu/device.h"
#include "gpu/ipc_handle.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"
#include "tools/child_process.h"

namespace troupe::gpu {
namespace {

using ::testing::HasSubstr;

constexpr char kChildFlag[] = "--ipc_child=";
constexpr size_t kHalf = 100003;  // Floats in each half of the shared buffer.

std::string Encode(IpcHandle handle) {
  std::vector<char> wire;
  caf::execution_unit* no_context = nullptr;  // Plain data needs no actor system.
  caf::binary_serializer sink(no_context, wire);
  if (sink(handle)) return "";
  return absl::BytesToHexString(absl::string_view(wire.data(), wire.size()));
}

absl::StatusOr<IpcHandle> Decode(const std::string& hex) {
  const std::string bytes = absl::HexStringToBytes(hex);
  std::vector<char> wire(bytes.begin(), bytes.end());
  IpcHandle handle;
  caf::execution_unit* no_context = nullptr;
  caf::binary_deserializer source(no_context, wire);
  if (source(handle)) return absl::InvalidArgumentError("could not decode the IpcHandle");
  return handle;
}

float Modified(float x) { return 2 * x + 1; }

// RunChild is the importing process. It reports on stderr and through its exit code.
int RunChild(const std::string& hex) {
  absl::StatusOr<IpcHandle> handle = Decode(hex);
  absl::StatusOr<IpcMappedBuffer> mapped = handle.ok()
                                               ? IpcMappedBuffer::Open(*handle, handle->device)
                                               : absl::StatusOr<IpcMappedBuffer>(handle.status());
  if (!mapped.ok()) {
    std::fprintf(stderr, "child: %s\n", mapped.status().ToString().c_str());
    return 1;
  }
  if (mapped->bytes() != 2 * kHalf * sizeof(float)) {
    std::fprintf(stderr, "child: mapped %zu bytes\n", mapped->bytes());
    return 2;
  }
  std::vector<float> values(kHalf);
  const size_t half_bytes = kHalf * sizeof(float);
  absl::Status status = CopyToHost(values.data(), mapped->data(), half_bytes, mapped->device());
  for (float& value : values) value = Modified(value);
  if (status.ok()) {
    status = CopyToDevice(static_cast<char*>(mapped->data()) + half_bytes, values.data(),
                          half_bytes, mapped->device());
  }
  if (!status.ok()) {
    std::fprintf(stderr, "child: %s\n", status.ToString().c_str());
    return 3;
  }
  return 0;
}

class IpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
  }
};

std::string SelfPath() {
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  return n > 0 ? std::string(path, n) : "/proc/self/exe";
}

TEST_F(IpcTest, AnotherProcessReadsAndWritesTheExportedBuffer) {
  const size_t bytes = 2 * kHalf * sizeof(float);
  DeviceBuffer buffer = *DeviceBuffer::Allocate(bytes, 0);
  std::vector<float> values = testing::RandomFloats(kHalf, 1);
  values.resize(2 * kHalf, -1.0f);  // The child overwrites the second half.
  ASSERT_TRUE(buffer.CopyFromHost(values.data(), bytes).ok());

  absl::StatusOr<IpcHandle> handle = ExportIpcHandle(buffer);
  ASSERT_TRUE(handle.ok()) << handle.status();
  EXPECT_EQ(handle->bytes, bytes);
  EXPECT_EQ(handle->device, 0);
  EXPECT_EQ(handle->handle.size(), IpcHandle::kSize);

  absl::StatusOr<std::unique_ptr<tools::ChildProcess>> child =
      tools::ChildProcess::Start({SelfPath(), absl::StrCat(kChildFlag, Encode(*handle))});
  ASSERT_TRUE(child.ok()) << child.status();
  absl::StatusOr<int> exit_code = (*child)->Wait(absl::Seconds(120));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  ASSERT_EQ(*exit_code, 0) << "child output:\n" << (*child)->Output();

  std::vector<float> out(2 * kHalf);
  ASSERT_TRUE(buffer.CopyToHost(out.data(), bytes).ok());
  for (size_t i = 0; i < kHalf; ++i) {
    ASSERT_EQ(out[i], values[i]) << "the child changed input element " << i;
    ASSERT_EQ(out[kHalf + i], Modified(values[i])) << "output element " << i;
  }
}

TEST_F(IpcTest, TheExportingProcessCannotOpenItsOwnHandle) {
  DeviceBuffer buffer = *DeviceBuffer::Allocate(4096, 0);
  IpcHandle handle = *ExportIpcHandle(buffer);
  absl::StatusOr<IpcMappedBuffer> mapped = IpcMappedBuffer::Open(handle, 0);
  EXPECT_EQ(mapped.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(mapped.status().message(),
              HasSubstr("CUDA does not let a process map its own IPC handle"));
}

TEST_F(IpcTest, BadHandlesAndBuffersAreClearErrors) {
  DeviceBuffer empty;
  absl::StatusOr<IpcHandle> nothing = ExportIpcHandle(empty);
  EXPECT_EQ(nothing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nothing.status().message(), HasSubstr("the DeviceBuffer is empty"));

  IpcHandle truncated;
  truncated.handle = "short";
  truncated.bytes = 16;
  EXPECT_THAT(IpcMappedBuffer::Open(truncated, 0).status().message(),
              HasSubstr("the handle has 5 bytes, CUDA's have 64"));

  IpcHandle zero_bytes;
  zero_bytes.handle = std::string(IpcHandle::kSize, '\0');
  EXPECT_THAT(IpcMappedBuffer::Open(zero_bytes, 0).status().message(),
              HasSubstr("the handle is for 0 bytes"));

  IpcHandle other_process;
  other_process.handle = std::string(IpcHandle::kSize, '\0');
  other_process.bytes = 16;
  other_process.exporter_pid = getpid() + 1;
  EXPECT_EQ(IpcMappedBuffer::Open(other_process, Device::Count()).status().code(),
            absl::StatusCode::kFailedPrecondition);  // No such device.
}

}  // namespace
}  // namespace troupe::gpu

int main(int argc, char** argv) {
  if (argc == 2 && absl::StartsWith(argv[1], troupe::gpu::kChildFlag)) {
    return troupe::gpu::RunChild(argv[1] + sizeof(troupe::gpu::kChildFlag) - 1);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
