#include "serving/instance/router.h"

#include <map>
#include <set>
#include <thread>
#include <vector>

#include "actors/directory.h"
#include "actors/errors.h"
#include "actors/runtime.h"
#include "actors/test_runtime.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serving/engine/cpu_backend.h"
#include "serving/instance/colocated_instance.h"
#include "serving/instance/internal/test_util.h"
#include "serving/instance/prefill_instance.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::instance {
namespace {

using ::testing::HasSubstr;
using test_util::Prompt;
using test_util::ReceiveUntilFinished;
using test_util::Stats;
using test_util::Streams;

constexpr int kBlocks = 64;

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime_ = test_util::StartRuntime();
    config_ = *model::ModelPreset("tiny");
    weights_ = model::RandomWeights(33);
  }

  void TearDown() override {
    caf::scoped_actor self{runtime_->system()};
    for (const caf::actor& a : spawned_) self->send_exit(a, caf::exit_reason::user_shutdown);
  }

  std::unique_ptr<engine::ForwardBackend> Backend() const {
    return *engine::CreateCpuBackend(config_, *weights_, {kBlocks});
  }

  caf::actor Prefill() {
    PrefillInstanceOptions options;
    options.backend = Backend();
    options.max_batch_tokens = 64;
    caf::actor a = *SpawnPrefillInstance(runtime_->system(), std::move(options));
    spawned_.push_back(a);
    return a;
  }

  caf::actor Decode() {
    ColocatedInstanceOptions options;
    options.backend = Backend();
    caf::actor a = *SpawnColocatedInstance(runtime_->system(), std::move(options));
    spawned_.push_back(a);
    return a;
  }

  caf::actor Router(std::vector<caf::actor> prefill, std::vector<caf::actor> decode) {
    RouterOptions options;
    options.prefill = std::move(prefill);
    options.decode = std::move(decode);
    return Router(std::move(options));
  }

  caf::actor Router(RouterOptions options) {
    absl::StatusOr<caf::actor> router = SpawnRouter(runtime_->system(), std::move(options));
    EXPECT_TRUE(router.ok()) << router.status();
    spawned_.push_back(*router);
    return *router;
  }

  RouterStats Stats(caf::scoped_actor& self, const caf::actor& router) {
    RouterStats stats;
    self->request(router, caf::infinite, router_stats_atom::value)
        .receive([&](const RouterStats& s) { stats = s; },
                 [&](const caf::error& e) { ADD_FAILURE() << actors::RenderError(e); });
    return stats;
  }

  // WaitFor polls `done` for up to 10 s (down messages and cancellations arrive on their own).
  template <class F>
  bool WaitFor(F done) {
    for (int i = 0; i < 500; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return done();
  }

  std::unique_ptr<actors::Runtime> runtime_;
  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
  std::vector<caf::actor> spawned_;
};

// Two prefill and two decode instances behind the router generate exactly what one batcher
// does, both decode instances take a share, and every block comes back.
TEST_F(RouterTest, SpreadsRequestsAndGeneratesTheColocatedTokens) {
  std::vector<caf::actor> prefill = {Prefill(), Prefill()};
  std::vector<caf::actor> decode = {Decode(), Decode()};
  caf::actor router = Router(prefill, decode);
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 8; ++i) requests.push_back({100 + i, Prompt(3 + 7 * i, i), 2 + 3 * i});
  requests[5].temperature = 0.7f;
  requests[5].seed = 9;
  caf::scoped_actor self{runtime_->system()};
  for (const GenerateRequest& r : requests) self->send(router, r);
  Streams streams;
  ASSERT_TRUE(ReceiveUntilFinished(self, streams, requests.size()));
  EXPECT_EQ(streams.tokens, test_util::Direct(*Backend(), requests));
  for (const auto& [id, reason] : streams.reasons) EXPECT_EQ(reason, kFinishedByLength) << id;
  for (const caf::actor& d : decode) {
    EXPECT_GT(test_util::Stats(self, d).tokens_generated, 0) << "a decode instance was idle";
  }
  for (const std::vector<caf::actor>* pool : {&prefill, &decode}) {
    for (const caf::actor& instance : *pool) {
      EXPECT_TRUE(WaitFor([&] { return test_util::Stats(self, instance).free_kv_blocks == kBlocks; }));
    }
  }
  const RouterStats stats = Stats(self, router);
  EXPECT_EQ(stats.finished, 8);
  EXPECT_EQ(stats.in_flight, 0);
  EXPECT_EQ(stats.prefill_instances, 2);
  EXPECT_EQ(stats.decode_instances, 2);
  EXPECT_GT(stats.mean_prefill_s, 0);
  EXPECT_GT(stats.mean_handoff_s, 0);
}

// Instances given by directory name are found, and the tokens are the same.
TEST_F(RouterTest, FindsInstancesByDirectoryName) {
  caf::actor directory = actors::StartTestDirectory(*runtime_, "n0");
  ASSERT_TRUE(actors::RegisterActor(runtime_->system(), directory, "p0", "prefill", Prefill()).ok());
  ASSERT_TRUE(actors::RegisterActor(runtime_->system(), directory, "d0", "decode", Decode()).ok());
  RouterOptions options;
  options.prefill_names = {"n0/p0"};
  options.decode_names = {"n0/d0"};
  options.directory = directory;
  caf::actor router = Router(options);
  caf::scoped_actor self{runtime_->system()};
  ASSERT_TRUE(WaitFor([&] {
    const RouterStats s = Stats(self, router);
    return s.prefill_instances == 1 && s.decode_instances == 1;
  }));
  const std::vector<GenerateRequest> requests = {{1, Prompt(9, 1), 5}, {2, Prompt(17, 2), 3}};
  for (const GenerateRequest& r : requests) self->send(router, r);
  Streams streams;
  ASSERT_TRUE(ReceiveUntilFinished(self, streams, requests.size()));
  EXPECT_EQ(streams.tokens, test_util::Direct(*Backend(), requests));
}

// A decode instance that dies ends the streams it was serving with a failure, frees what the
// prefill side kept for them, and new requests go to the decode instance that is left.
TEST_F(RouterTest, ADeadDecodeInstanceFailsItsStreamsAndTheOtherTakesOver) {
  caf::actor prefill = Prefill();
  std::vector<caf::actor> decode = {Decode(), Decode()};
  caf::actor router = Router({prefill}, decode);
  caf::scoped_actor self{runtime_->system()};
  // Two long requests: the router puts them on different decode instances (fewest in flight).
  self->send(router, GenerateRequest{1, Prompt(20, 1), 480});
  self->send(router, GenerateRequest{2, Prompt(20, 2), 480});
  Streams streams;
  while (streams.tokens[1].size() < 3 || streams.tokens[2].size() < 3) {
    bool got = false;
    self->receive(
        [&](const GeneratedToken& t) {
          got = true;
          if (t.token >= 0) streams.tokens[t.request_id].push_back(t.token);
          if (t.finished) streams.reasons[t.request_id] = t.reason;
        },
        caf::after(std::chrono::seconds(30)) >> [] {});
    ASSERT_TRUE(got) << "no token within 30 s";
    ASSERT_TRUE(streams.reasons.empty()) << "a request finished before the kill";
  }
  self->send_exit(decode[0], caf::exit_reason::kill);
  ASSERT_TRUE(ReceiveUntilFinished(self, streams, 2));
  std::map<uint8_t, int> outcomes;
  for (const auto& [id, reason] : streams.reasons) ++outcomes[reason];
  EXPECT_EQ(outcomes[kFinishedByFailure], 1) << "the stream on the dead instance must fail";
  EXPECT_EQ(outcomes[kFinishedByLength], 1) << "the stream on the live instance must finish";
  // A new request is served by the survivor, with the colocated tokens.
  const std::vector<GenerateRequest> next = {{3, Prompt(11, 3), 6}};
  self->send(router, next[0]);
  Streams after;
  ASSERT_TRUE(ReceiveUntilFinished(self, after, 1));
  EXPECT_EQ(after.reasons[3], kFinishedByLength);
  EXPECT_EQ(after.tokens, test_util::Direct(*Backend(), next));
  const RouterStats stats = Stats(self, router);
  EXPECT_EQ(stats.decode_instances, 1);
  EXPECT_EQ(stats.failed, 1);
  EXPECT_EQ(stats.in_flight, 0);
  EXPECT_TRUE(WaitFor([&] { return test_util::Stats(self, prefill).free_kv_blocks == kBlocks; }));
  EXPECT_TRUE(WaitFor([&] { return test_util::Stats(self, decode[1]).free_kv_blocks == kBlocks; }));
}

// Cancelling through the router ends the stream at once and frees every block on both sides;
// so does a client that goes away mid-stream.
TEST_F(RouterTest, CancelAndClientDisconnectFreeEveryBlock) {
  caf::actor prefill = Prefill();
  caf::actor decode = Decode();
  caf::actor router = Router({prefill}, {decode});
  caf::scoped_actor self{runtime_->system()};
  self->request(router, caf::infinite, GenerateRequest{1, Prompt(40, 1), 400})
      .receive([] {}, [](const caf::error& e) { ADD_FAILURE() << actors::RenderError(e); });
  self->receive([](const GeneratedToken& t) { EXPECT_EQ(t.request_id, 1); });  // it started
  bool known = false;
  self->request(router, caf::infinite, cancel_atom::value, int64_t{1})
      .receive([&](bool k) { known = k; },
               [&](const caf::error& e) { ADD_FAILURE() << actors::RenderError(e); });
  EXPECT_TRUE(known);
  Streams streams;
  ASSERT_TRUE(ReceiveUntilFinished(self, streams, 1));
  EXPECT_EQ(streams.reasons[1], kFinishedByCancel);

  // A client that leaves after its first token: its two requests are cancelled everywhere.
  caf::actor test = caf::actor_cast<caf::actor>(self);
  runtime_->system().spawn([router, test](caf::event_based_actor* client) {
    for (int64_t id : {2, 3}) {
      client->request(router, caf::infinite, GenerateRequest{id, Prompt(30, id), 400})
          .then([] {}, [](const caf::error&) {});
    }
    return caf::behavior{[client, test](const GeneratedToken& t) {
      client->send(test, t);
      client->quit();
    }};
  });
  self->receive([](const GeneratedToken& t) { EXPECT_NE(t.request_id, 1); });  // it started
  EXPECT_TRUE(WaitFor([&] { return Stats(self, router).cancelled == 3; }));
  EXPECT_EQ(Stats(self, router).in_flight, 0);
  EXPECT_TRUE(WaitFor([&] {
    const InstanceStats p = test_util::Stats(self, prefill);
    const InstanceStats d = test_util::Stats(self, decode);
    return p.free_kv_blocks == kBlocks && d.free_kv_blocks == kBlocks && d.running == 0 &&
           d.waiting == 0 && p.waiting == 0 && p.running == 0;
  })) << "blocks were not returned";
}

TEST_F(RouterTest, RefusesWhatItCannotServe) {
  caf::actor prefill = Prefill();
  caf::actor decode = Decode();
  caf::actor router = Router({prefill}, {decode});
  caf::scoped_actor self{runtime_->system()};
  std::string message;
  // The prefill instance's own refusal comes back as is.
  self->request(router, caf::infinite, GenerateRequest{5, {}, 4})
      .receive([] { ADD_FAILURE() << "an empty prompt was accepted"; },
               [&](const caf::error& e) { message = actors::RenderError(e); });
  EXPECT_THAT(message, HasSubstr("request 5: the prompt is empty"));
  // An id already in flight.
  self->send(router, GenerateRequest{6, Prompt(10, 1), 400});
  self->request(router, caf::infinite, GenerateRequest{6, Prompt(10, 1), 4})
      .receive([] { ADD_FAILURE() << "a duplicate id was accepted"; },
               [&](const caf::error& e) { message = actors::RenderError(e); });
  EXPECT_THAT(message, HasSubstr("request 6 is already in flight"));
  // No prefill instance left.
  self->send_exit(prefill, caf::exit_reason::kill);
  ASSERT_TRUE(WaitFor([&] { return Stats(self, router).prefill_instances == 0; }));
  self->request(router, caf::infinite, GenerateRequest{7, Prompt(10, 1), 4})
      .receive([] { ADD_FAILURE() << "a request was accepted without prefill instances"; },
               [&](const caf::error& e) { message = actors::RenderError(e); });
  EXPECT_THAT(message, HasSubstr("no prefill instance is up"));
}

// Many requests over small caches (prefill back-pressure, decode preemption), a third of them
// cancelled at different points: the rest generate the batcher's tokens, and when all is done
// every instance has every block free again.
TEST_F(RouterTest, ManyRequestsWithCancellationsReturnEveryBlock) {
  std::vector<caf::actor> prefill = {Prefill()};
  std::vector<caf::actor> decode = {Decode(), Decode()};
  caf::actor router = Router(prefill, decode);
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 36; ++i) {
    requests.push_back({500 + i, Prompt(5 + (i * 11) % 60, i), 5 + (i * 7) % 36});
  }
  caf::scoped_actor self{runtime_->system()};
  std::set<int64_t> cancelled;
  for (const GenerateRequest& r : requests) {
    self->send(router, r);
    if (r.id % 6 == 0) {  // cancelled before it can have started
      self->send(router, cancel_atom::value, r.id);
      cancelled.insert(r.id);
    }
  }
  Streams streams;
  while (streams.reasons.size() < requests.size()) {
    bool got = false;
    self->receive(
        [&](const GeneratedToken& t) {
          got = true;
          if (t.token >= 0) streams.tokens[t.request_id].push_back(t.token);
          if (t.finished) streams.reasons[t.request_id] = t.reason;
          // Cancel some requests after their first (prefill) or third (decode) token.
          const size_t have = streams.tokens[t.request_id].size();
          if (!t.finished && t.request_id % 3 == 1 && (have == 1 || have == 3) &&
              cancelled.insert(t.request_id).second) {
            self->send(router, cancel_atom::value, t.request_id);
          }
        },
        [&](bool) { got = true; },  // the router's answers to the cancellations
        [&]() { got = true; },      // and to the requests (queued)
        [&](const caf::error& e) {
          got = true;
          ADD_FAILURE() << actors::RenderError(e);
        },
        caf::after(std::chrono::seconds(30)) >> [] {});
    ASSERT_TRUE(got) << streams.reasons.size() << " of " << requests.size() << " finished";
  }
  // A request cancelled after it started may have finished first; one cancelled right after it
  // was sent cannot have.
  std::vector<GenerateRequest> kept;
  int64_t ended_by_cancel = 0;
  for (const GenerateRequest& r : requests) {
    if (streams.reasons[r.id] == kFinishedByCancel) {
      EXPECT_EQ(cancelled.count(r.id), 1) << "request " << r.id << " was cancelled by no one";
      streams.tokens.erase(r.id);
      ++ended_by_cancel;
    } else {
      EXPECT_EQ(streams.reasons[r.id], kFinishedByLength) << r.id;
      EXPECT_NE(r.id % 6, 0) << "request " << r.id << " outran its cancellation";
      kept.push_back(r);
    }
  }
  EXPECT_GT(ended_by_cancel, 6);
  EXPECT_EQ(streams.tokens, test_util::Direct(*Backend(), kept));
  for (const std::vector<caf::actor>* pool : {&prefill, &decode}) {
    for (const caf::actor& instance : *pool) {
      EXPECT_TRUE(WaitFor([&] {
        const InstanceStats s = test_util::Stats(self, instance);
        return s.free_kv_blocks == kBlocks && s.waiting == 0 && s.running == 0;
      })) << "an instance kept blocks";
    }
  }
  const RouterStats stats = Stats(self, router);
  EXPECT_EQ(stats.in_flight, 0);
  EXPECT_EQ(stats.finished, static_cast<int64_t>(kept.size()));
  EXPECT_EQ(stats.cancelled, ended_by_cancel);
}

// Without decode instances, the router serves through colocated instances alone.
TEST_F(RouterTest, ServesThroughColocatedInstancesAlone) {
  caf::actor router = Router({Decode(), Decode()}, {});
  const std::vector<GenerateRequest> requests = {{1, Prompt(9, 1), 5}, {2, Prompt(17, 2), 8}};
  caf::scoped_actor self{runtime_->system()};
  for (const GenerateRequest& r : requests) self->send(router, r);
  Streams streams;
  ASSERT_TRUE(ReceiveUntilFinished(self, streams, requests.size()));
  EXPECT_EQ(streams.tokens, test_util::Direct(*Backend(), requests));
  EXPECT_EQ(Stats(self, router).finished, 2);
}

TEST(SpawnRouterTest, BadOptionsAreErrors) {
  std::unique_ptr<actors::Runtime> runtime = actors::StartTestRuntime(1);
  caf::actor_system& system = runtime->system();
  EXPECT_THAT(SpawnRouter(system, {}).status().message(), HasSubstr("no prefill (or colocated) instance"));
  RouterOptions bad_name;
  bad_name.prefill_names = {"p0"};
  bad_name.decode_names = {"n0/d0"};
  EXPECT_THAT(SpawnRouter(system, bad_name).status().message(),
              HasSubstr("\"p0\" is not of the form \"node/name\""));
  RouterOptions no_directory;
  no_directory.prefill_names = {"n0/p0"};
  no_directory.decode_names = {"n0/d0"};
  EXPECT_THAT(SpawnRouter(system, no_directory).status().message(), HasSubstr("need a directory"));
}

}  // namespace
}  // namespace troupe::serving::instance
