// An IpcHandle survives CAF's binary serialization unchanged, binary handle bytes included.
#include "gpu/ipc_handle.h"

#include <string>
#include <vector>

#include "caf/binary_deserializer.hpp"
#include "caf/binary_serializer.hpp"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

TEST(IpcHandleTest, RoundTripsThroughCafSerialization) {
  IpcHandle sent;
  for (size_t i = 0; i < IpcHandle::kSize; ++i) sent.handle.push_back(static_cast<char>(i * 37));
  sent.bytes = uint64_t{5} << 33;
  sent.device = 3;
  sent.exporter_pid = 4242;
  sent.exporter_token = 0xfeedfacecafebeefu;

  std::vector<char> wire;
  caf::execution_unit* no_context = nullptr;  // Plain data needs no actor system.
  caf::binary_serializer sink(no_context, wire);
  ASSERT_FALSE(sink(sent));
  IpcHandle received;
  caf::binary_deserializer source(no_context, wire);
  ASSERT_FALSE(source(received));
  EXPECT_EQ(received, sent);
  EXPECT_EQ(received.handle.size(), IpcHandle::kSize);
  EXPECT_EQ(received.handle[0], '\0');
}

TEST(IpcHandleTest, EveryFieldTakesPartInEquality) {
  IpcHandle a;
  a.handle = std::string(IpcHandle::kSize, 'x');
  IpcHandle b = a;
  EXPECT_EQ(a, b);
  b.exporter_token = 1;
  EXPECT_NE(a, b);
  b = a;
  b.device = 1;
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace troupe::gpu
