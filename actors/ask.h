// Ask: a blocking request from non-actor code (main, tests, tools) that never hangs.
//
// CAF 0.17 answers a request to a remote actor whose process died only by timing out. Ask
// watches the target as well: if it goes down first, the answer is Unavailable with the reason,
// at once. Inside actors, use PendingWork (actors/pending_work.h) for the same guarantee.
//
//   absl::StatusOr<Ping> pong = Ask<Ping>(system, echo, absl::Seconds(5), Ping{1, "x"});
//   absl::Status done = AskDone(system, directory, absl::Seconds(5), leave_atom::value);
#pragma once

#include <chrono>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "actors/errors.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"
#include "caf/event_based_actor.hpp"
#include "caf/scoped_actor.hpp"

namespace troupe::actors {

// ToCafDuration converts an absl::Duration to a CAF timeout; infinite stays infinite.
inline caf::duration ToCafDuration(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return caf::infinite;
  return caf::duration(std::chrono::microseconds(absl::ToInt64Microseconds(d)));
}

namespace internal {

// AskImpl spawns a relay that requests `target` and monitors it, then waits for the relay.
// R = void for requests whose reply is empty.
template <class R, class... Ts>
absl::Status AskImpl(caf::actor_system& system, const caf::actor& target, absl::Duration timeout,
                     std::optional<std::conditional_t<std::is_void_v<R>, int, R>>* out,
                     Ts&&... xs) {
  using Value = std::conditional_t<std::is_void_v<R>, int, R>;
  if (!target) {
    return absl::InvalidArgumentError("Ask: the target actor handle is empty");
  }
  caf::scoped_actor self{system};
  caf::actor requester = caf::actor_cast<caf::actor>(self);
  auto args = std::make_tuple(std::forward<Ts>(xs)...);
  auto relay = system.spawn([target, timeout, requester, args](caf::event_based_actor* r) {
    r->monitor(target);
    r->set_down_handler([r, target, requester](caf::down_msg& down) {
      if (down.source != target.address()) return;
      r->send(requester, MakeCafError(absl::StatusCode::kUnavailable,
                                      absl::StrCat("the actor went down before replying (",
                                                   RenderError(down.reason), ")")));
      r->quit();
    });
    std::apply(
        [&](const auto&... a) {
          auto handle = r->request(target, ToCafDuration(timeout), a...);
          if constexpr (std::is_void_v<R>) {
            handle.then([r, requester]() { r->send(requester, Value{1}); r->quit(); },
                        [r, requester](caf::error& e) { r->send(requester, e); r->quit(); });
          } else {
            handle.then([r, requester](R& v) { r->send(requester, std::move(v)); r->quit(); },
                        [r, requester](caf::error& e) { r->send(requester, e); r->quit(); });
          }
        },
        args);
    return caf::behavior{};
  });
  absl::Status status = absl::OkStatus();
  // The relay always answers: with the reply, the target's error, its down reason, or CAF's
  // request_timeout. The extra second only guards against a relay that could not run at all.
  self->receive(
      [&](Value& value) { *out = std::move(value); },
      [&](caf::error& error) { status = ToStatus(error); },
      caf::after(ToCafDuration(timeout + absl::Seconds(1))) >> [&] {
        status = absl::DeadlineExceededError("Ask: no answer from the relay actor");
      });
  return status;
}

}  // namespace internal

// Ask requests `xs...` from `target` and waits up to `timeout` for a reply of type R.
template <class R, class... Ts>
absl::StatusOr<R> Ask(caf::actor_system& system, const caf::actor& target,
                      absl::Duration timeout, Ts&&... xs) {
  std::optional<R> value;
  absl::Status status =
      internal::AskImpl<R>(system, target, timeout, &value, std::forward<Ts>(xs)...);
  if (!status.ok()) return status;
  return std::move(*value);
}

// AskDone requests `xs...` from `target` and waits for an empty reply (or an error).
template <class... Ts>
absl::Status AskDone(caf::actor_system& system, const caf::actor& target, absl::Duration timeout,
                     Ts&&... xs) {
  std::optional<int> ignored;
  return internal::AskImpl<void>(system, target, timeout, &ignored, std::forward<Ts>(xs)...);
}

}  // namespace troupe::actors
