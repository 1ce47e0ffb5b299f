// One non-default sample value of every type in Troupe's CAF type-ID block.
//
// The cross-process test sends each sample to another process and back and compares. The
// static_assert below fails the build when a type is added to the block without a sample here.
#pragma once

#include <tuple>
#include <vector>

#include "actors/messages.h"
#include "caf/actor.hpp"

namespace troupe::actors {

// MessageSamples returns the samples; `handle` is any live actor, for the fields that hold one.
inline auto MessageSamples(const caf::actor& handle) {
  NodeInfo node{"n1", "10.0.0.2", 4101, {0, 3}};
  Member member{node, handle};
  return std::make_tuple(
      node, std::vector<NodeInfo>{node, NodeInfo{"n2", "::1", 1, {}}}, member,
      std::vector<Member>{member, Member{NodeInfo{"n3", "h", 9, {7}}, handle}},
      MembershipEvent{MembershipEvent::Kind::kDown, node, "connection_timeout"},
      ActorInfo{"n1", "router", "router"},
      std::vector<ActorInfo>{ActorInfo{"n1", "a", "echo"}, ActorInfo{"n2", "b", "gpu_worker"}},
      WorkerStats{"w0", "cuda:1", 17, 2, 123456789, 987654321},
      ChildStatus{"w0", ChildStatus::State::kFailed, 3, "INTERNAL: boom"},
      std::vector<ChildStatus>{ChildStatus{"a", ChildStatus::State::kStopped, 0, ""}},
      Ping{42, std::string("payload\0with\xffzero", 17)});
}

static_assert(std::tuple_size_v<decltype(MessageSamples(caf::actor()))> ==
                  caf::id_block::troupe::end - caf::id_block::troupe::begin,
              "every type in the troupe type-ID block needs a sample in MessageSamples");

}  // namespace troupe::actors
