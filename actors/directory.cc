#include "actors/directory.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actors/ask.h"
#include "actors/errors.h"
#include "actors/instrumented_actor.h"
#include "caf/all.hpp"
#include "caf/io/middleman.hpp"

namespace troupe::actors {
namespace {

constexpr absl::Duration kAskTimeout = absl::Seconds(10);

struct LocalEntry {
  caf::actor actor;
  std::string role;
};

struct Peer {
  NodeInfo info;
  caf::actor directory;
};

struct PendingLookup {
  std::string node;
  std::string name;
  absl::Time deadline;
  absl::Duration backoff;
  std::string last_problem;
  caf::response_promise promise;
};

struct DirectoryState;
using DirectoryActor = caf::stateful_actor<DirectoryState, InstrumentedActor>;

absl::Duration FromTimespan(caf::timespan t) {
  return absl::Nanoseconds(t.count());
}

struct DirectoryState {
  DirectoryActor* self = nullptr;
  DirectoryOptions options;
  std::map<std::string, LocalEntry> local;
  std::map<std::string, Peer> peers;
  std::set<caf::actor> subscribers;
  std::map<uint64_t, PendingLookup> lookups;
  uint64_t next_lookup = 1;

  const NodeInfo& me() const { return options.self; }

  Member SelfMember() const { return Member{me(), caf::actor_cast<caf::actor>(self)}; }

  std::vector<NodeInfo> MemberInfos() const {
    std::vector<NodeInfo> out = {me()};
    for (const auto& [name, peer] : peers) out.push_back(peer.info);
    return out;
  }

  std::vector<Member> Members() const {
    std::vector<Member> out = {SelfMember()};
    for (const auto& [name, peer] : peers) out.push_back(Member{peer.info, peer.directory});
    return out;
  }

  std::string MemberNames() const {
    std::vector<std::string> names;
    for (const NodeInfo& info : MemberInfos()) names.push_back(info.name);
    return absl::StrJoin(names, ", ");
  }

  void Publish(MembershipEvent::Kind kind, const NodeInfo& node, const std::string& reason) {
    MembershipEvent event{kind, node, reason};
    for (const caf::actor& subscriber : subscribers) self->send(subscriber, event);
  }

  // --- local names ---------------------------------------------------------------------------

  caf::result<void> Register(const std::string& name, const std::string& role,
                             const caf::actor& actor) {
    if (!actor) {
      return MakeCafError(absl::StatusCode::kInvalidArgument,
                          absl::StrCat("cannot register ", Quoted(name), ": the handle is empty"));
    }
    auto it = local.find(name);
    if (it != local.end() && it->second.actor != actor) {
      return MakeCafError(absl::StatusCode::kAlreadyExists,
                          absl::StrCat("node ", Quoted(me().name), " already has an actor named ",
                                       Quoted(name), " (role ", it->second.role,
                                       "); pick another name or unregister it first"));
    }
    local[name] = LocalEntry{actor, role};
    self->monitor(actor);
    return caf::unit;
  }

  caf::result<caf::actor> LookupLocal(const std::string& name) const {
    auto it = local.find(name);
    if (it != local.end()) return it->second.actor;
    std::vector<std::string> names;
    for (const auto& [n, entry] : local) names.push_back(n);
    return MakeCafError(absl::StatusCode::kNotFound,
                        absl::StrCat("node ", Quoted(me().name), " has no actor named ",
                                     Quoted(name), " (it has: ",
                                     names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
  }

  std::vector<ActorInfo> List() const {
    std::vector<ActorInfo> out;
    for (const auto& [name, entry] : local) out.push_back(ActorInfo{me().name, name, entry.role});
    return out;
  }

  // --- lookups with retry --------------------------------------------------------------------

  caf::result<caf::actor> StartLookup(const std::string& node, const std::string& name,
                                      caf::timespan timeout) {
    const uint64_t id = next_lookup++;
    lookups[id] = PendingLookup{node,
                                name,
                                absl::Now() + FromTimespan(timeout),
                                options.retry_initial,
                                "",
                                self->make_response_promise()};
    caf::response_promise promise = lookups[id].promise;
    Attempt(id);
    return promise;
  }

  void Attempt(uint64_t id) {
    auto it = lookups.find(id);
    if (it == lookups.end()) return;
    PendingLookup& lookup = it->second;
    if (lookup.node == me().name) {
      auto found = local.find(lookup.name);
      if (found != local.end()) return Finish(id, found->second.actor);
      lookup.last_problem = ToStatus(LookupLocal(lookup.name).err).ToString();
      return RetryLater(id);
    }
    auto peer = peers.find(lookup.node);
    if (peer == peers.end()) {
      lookup.last_problem =
          absl::StrCat("no node named ", Quoted(lookup.node), " has joined (members: ",
                       MemberNames(), "); start it, or check its name and its --join address");
      return RetryLater(id);
    }
    absl::Duration remaining = std::max(lookup.deadline - absl::Now(), absl::Milliseconds(1));
    self->request(peer->second.directory, ToCafDuration(remaining), lookup_local_atom::value,
                  lookup.name)
        .then([this, id](caf::actor& actor) { Finish(id, std::move(actor)); },
              [this, id](caf::error& error) {
                auto again = lookups.find(id);
                if (again == lookups.end()) return;
                again->second.last_problem = ToStatus(error).ToString();
                RetryLater(id);
              });
  }

  void RetryLater(uint64_t id) {
    PendingLookup& lookup = lookups.at(id);
    absl::Time now = absl::Now();
    if (now + lookup.backoff >= lookup.deadline) {
      lookup.promise.deliver(MakeCafError(
          absl::StatusCode::kDeadlineExceeded,
          absl::StrCat("lookup of actor ", Quoted(lookup.name), " on node ", Quoted(lookup.node),
                       " gave up at its deadline: ", lookup.last_problem)));
      lookups.erase(id);
      return;
    }
    self->delayed_send(self, std::chrono::microseconds(absl::ToInt64Microseconds(lookup.backoff)),
                       retry_atom::value, id);
    lookup.backoff = std::min(lookup.backoff * 2, options.retry_max);
  }

  void Finish(uint64_t id, caf::actor actor) {
    auto it = lookups.find(id);
    if (it == lookups.end()) return;
    it->second.promise.deliver(std::move(actor));
    lookups.erase(it);
  }

  // --- membership ----------------------------------------------------------------------------

  caf::result<std::vector<Member>> Hello(const Member& member) {
    const std::string& name = member.info.name;
    if (name == me().name) {
      return MakeCafError(absl::StatusCode::kAlreadyExists,
                          absl::StrCat("node name ", Quoted(name), " is already taken by ",
                                       me().host, ":", me().port,
                                       "; give each node of a cluster its own name"));
    }
    auto it = peers.find(name);
    if (it != peers.end() && it->second.directory != member.directory) {
      if (it->second.info.host != member.info.host) {
        return MakeCafError(
            absl::StatusCode::kAlreadyExists,
            absl::StrCat("node name ", Quoted(name), " is already taken by ",
                         it->second.info.host, ":", it->second.info.port,
                         "; give each node of a cluster its own name"));
      }
      // Same name from the same host: the node restarted before we saw it go down.
      RemovePeer(name, MembershipEvent::Kind::kDown, "replaced by a restarted node");
    }
    if (peers.count(name) == 0) AddPeer(member);
    return Members();
  }

  void AddPeer(const Member& member) {
    peers[member.info.name] = Peer{member.info, member.directory};
    self->monitor(member.directory);
    Publish(MembershipEvent::Kind::kJoined, member.info, "");
  }

  void RemovePeer(const std::string& name, MembershipEvent::Kind kind, const std::string& why) {
    auto it = peers.find(name);
    if (it == peers.end()) return;
    NodeInfo info = it->second.info;
    self->demonitor(it->second.directory);
    peers.erase(it);
    Publish(kind, info, why);
  }

  caf::result<std::vector<NodeInfo>> Join(const std::string& host, uint16_t port,
                                          caf::timespan timeout) {
    if (host == me().host && port == me().port) return MemberInfos();  // We are the seed.
    caf::response_promise promise = self->make_response_promise();
    const caf::duration wait = ToCafDuration(FromTimespan(timeout));
    Connect(host, port, wait,
            [this, promise, wait, host, port](caf::actor seed) mutable {
              self->request(seed, wait, hello_atom::value, SelfMember())
                  .then(
                      [this, promise, wait, seed](std::vector<Member>& members) mutable {
                        GreetAll(seed, std::move(members), wait, promise);
                      },
                      [promise, host, port](caf::error& error) mutable {
                        promise.deliver(MakeCafError(
                            ToStatus(error).code(),
                            absl::StrCat("joining via ", host, ":", port,
                                         " failed: ", ToStatus(error).message())));
                      });
            },
            [promise](caf::error error) mutable { promise.deliver(std::move(error)); });
    return promise;
  }

  // Connect resolves the directory published at host:port without blocking this actor.
  template <class OnActor, class OnError>
  void Connect(const std::string& host, uint16_t port, caf::duration wait, OnActor on_actor,
               OnError on_error) {
    auto middleman = self->home_system().middleman().actor_handle();
    self->request(middleman, wait, caf::connect_atom::value, host, port)
        .then(
            [on_actor, on_error, host, port](const caf::node_id&, caf::strong_actor_ptr& ptr,
                                             const std::set<std::string>&) mutable {
              if (!ptr) {
                on_error(MakeCafError(absl::StatusCode::kUnavailable,
                                      absl::StrCat("nothing is published at ", host, ":", port)));
                return;
              }
              on_actor(caf::actor_cast<caf::actor>(std::move(ptr)));
            },
            [on_error, host, port](caf::error& error) mutable {
              on_error(MakeCafError(
                  absl::StatusCode::kUnavailable,
                  absl::StrCat("cannot reach a Troupe node at ", host, ":", port, " (",
                               RenderError(error),
                               "); check that it runs and that the address is right")));
            });
  }

  // GreetAll records the seed and says hello to every other member the seed told us about,
  // each over a direct connection of its own.
  void GreetAll(const caf::actor& seed, std::vector<Member> members, caf::duration wait,
                caf::response_promise promise) {
    auto outstanding = std::make_shared<size_t>(1);  // The loop itself holds one.
    auto done = [this, outstanding, promise]() mutable {
      if (--*outstanding == 0) promise.deliver(MemberInfos());
    };
    for (Member& member : members) {
      if (member.info.name == me().name || peers.count(member.info.name) > 0) continue;
      if (member.directory.node() == seed.node() && member.directory.id() == seed.id()) {
        AddPeer(Member{member.info, seed});  // Already greeted by Join.
        continue;
      }
      ++*outstanding;
      Connect(member.info.host, member.info.port, wait,
              [this, wait, done, info = member.info](caf::actor directory) mutable {
                self->request(directory, wait, hello_atom::value, SelfMember())
                    .then(
                        [this, done, info, directory](std::vector<Member>&) mutable {
                          if (peers.count(info.name) == 0) AddPeer(Member{info, directory});
                          done();
                        },
                        [done](caf::error&) mutable { done(); });
              },
              [done](caf::error) mutable { done(); });
    }
    done();
  }

  void Leave() {
    for (const auto& [name, peer] : peers) {
      self->demonitor(peer.directory);
      self->send(peer.directory, bye_atom::value, me().name);
    }
    peers.clear();
  }

  void OnDown(const caf::down_msg& down) {
    for (auto it = peers.begin(); it != peers.end(); ++it) {
      if (it->second.directory.address() == down.source) {
        RemovePeer(it->first, MembershipEvent::Kind::kDown, RenderError(down.reason));
        return;
      }
    }
    for (auto it = local.begin(); it != local.end(); ++it) {
      if (it->second.actor.address() == down.source) {
        local.erase(it);
        return;
      }
    }
    for (auto it = subscribers.begin(); it != subscribers.end(); ++it) {
      if (it->address() == down.source) {
        subscribers.erase(it);
        return;
      }
    }
  }
};

caf::behavior Directory(DirectoryActor* self, DirectoryOptions options) {
  DirectoryState& state = self->state;
  state.self = self;
  state.options = std::move(options);
  self->Instrument("directory", "directory");
  self->set_down_handler([self](caf::down_msg& down) { self->state.OnDown(down); });
  return {
      [self](register_atom, const std::string& name, const std::string& role,
             const caf::actor& actor) { return self->state.Register(name, role, actor); },
      [self](unregister_atom, const std::string& name) {
        auto it = self->state.local.find(name);
        if (it != self->state.local.end()) {
          self->demonitor(it->second.actor);
          self->state.local.erase(it);
        }
      },
      [self](lookup_atom, const std::string& node, const std::string& name,
             caf::timespan timeout) { return self->state.StartLookup(node, name, timeout); },
      [self](lookup_local_atom, const std::string& name) {
        return self->state.LookupLocal(name);
      },
      [self](retry_atom, uint64_t id) { self->state.Attempt(id); },
      [self](list_atom) { return self->state.List(); },
      [self](port_atom, uint16_t port) { self->state.options.self.port = port; },
      [self](members_atom) { return self->state.MemberInfos(); },
      [self](join_atom, const std::string& host, uint16_t port, caf::timespan timeout) {
        return self->state.Join(host, port, timeout);
      },
      [self](hello_atom, const Member& member) { return self->state.Hello(member); },
      [self](leave_atom) { self->state.Leave(); },
      [self](bye_atom, const std::string& node) {
        self->state.RemovePeer(node, MembershipEvent::Kind::kLeft, "left the cluster");
      },
      [self](subscribe_atom, const caf::actor& subscriber) {
        self->state.subscribers.insert(subscriber);
        self->monitor(subscriber);
        return self->state.MemberInfos();
      },
  };
}

}  // namespace

caf::timespan ToTimespan(absl::Duration d) {
  return caf::timespan(absl::ToInt64Nanoseconds(d));
}

caf::actor SpawnDirectory(caf::actor_system& system, DirectoryOptions options) {
  return system.spawn(Directory, std::move(options));
}

absl::StatusOr<uint16_t> PublishDirectory(caf::actor_system& system, const caf::actor& directory,
                                          const std::string& host, uint16_t port) {
  caf::expected<uint16_t> bound =
      system.middleman().publish(directory, port, host.empty() ? nullptr : host.c_str(), false);
  if (!bound) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", host, ":", port, " (", RenderError(bound.error()),
        "); the port may be taken or the host not an address of this machine. Change the "
        "node's host/port in the config, or use port = 0"));
  }
  // With port 0 only now is the port known; members advertise it to each other.
  AskDone(system, directory, kAskTimeout, port_atom::value, *bound).IgnoreError();
  return *bound;
}

absl::StatusOr<caf::actor> ConnectDirectory(caf::actor_system& system, const std::string& host,
                                            uint16_t port) {
  caf::expected<caf::actor> directory = system.middleman().remote_actor(host, port);
  if (!directory) {
    return absl::UnavailableError(absl::StrCat(
        "cannot reach a Troupe node at ", host, ":", port, " (", RenderError(directory.error()),
        "); check that it runs and that the address is right"));
  }
  return *directory;
}

absl::Status RegisterActor(caf::actor_system& system, const caf::actor& directory,
                           const std::string& name, const std::string& role,
                           const caf::actor& actor) {
  return AskDone(system, directory, kAskTimeout, register_atom::value, name, role, actor);
}

absl::StatusOr<caf::actor> LookupActor(caf::actor_system& system, const caf::actor& directory,
                                       const std::string& node, const std::string& name,
                                       absl::Duration timeout) {
  return Ask<caf::actor>(system, directory, timeout + kAskTimeout, lookup_atom::value, node, name,
                         ToTimespan(timeout));
}

absl::StatusOr<std::vector<NodeInfo>> JoinCluster(caf::actor_system& system,
                                                  const caf::actor& directory,
                                                  const std::string& seed_host,
                                                  uint16_t seed_port, absl::Duration timeout) {
  return Ask<std::vector<NodeInfo>>(system, directory, timeout + kAskTimeout, join_atom::value,
                                    seed_host, seed_port, ToTimespan(timeout));
}

absl::StatusOr<std::vector<NodeInfo>> ListMembers(caf::actor_system& system,
                                                  const caf::actor& directory) {
  return Ask<std::vector<NodeInfo>>(system, directory, kAskTimeout, members_atom::value);
}

absl::StatusOr<std::vector<ActorInfo>> ListActors(caf::actor_system& system,
                                                  const caf::actor& directory) {
  return Ask<std::vector<ActorInfo>>(system, directory, kAskTimeout, list_atom::value);
}

}  // namespace troupe::actors
