#include "serving/instance/colocated_instance.h"

#include <map>
#include <vector>

#include "actors/errors.h"
#include "actors/runtime.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serving/engine/cpu_backend.h"
#include "serving/instance/internal/test_util.h"
#include "serving/instance/prefill_instance.h"
#include "serving/kv/block_manager.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::instance {
namespace {

using ::testing::HasSubstr;
using test_util::Prompt;
using test_util::Stats;

constexpr int kBlocks = 64;

class ColocatedInstanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime_ = test_util::StartRuntime();
    config_ = *model::ModelPreset("tiny");
    weights_ = model::RandomWeights(21);
  }

  std::unique_ptr<engine::ForwardBackend> Backend() const {
    return *engine::CreateCpuBackend(config_, *weights_, {kBlocks});
  }

  caf::actor Spawn(engine::BatcherOptions batcher = {}) {
    ColocatedInstanceOptions options;
    options.backend = Backend();
    options.batcher = batcher;
    absl::StatusOr<caf::actor> instance =
        SpawnColocatedInstance(runtime_->system(), std::move(options));
    EXPECT_TRUE(instance.ok()) << instance.status();
    return *instance;
  }

  // What the batcher alone generates for `requests`.
  std::map<int64_t, std::vector<int32_t>> Direct(const std::vector<GenerateRequest>& requests) {
    return test_util::Direct(*Backend(), requests);
  }

  std::unique_ptr<actors::Runtime> runtime_;
  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
};

TEST_F(ColocatedInstanceTest, StreamsWhatTheBatcherGenerates) {
  caf::actor instance = Spawn();
  caf::scoped_actor self{runtime_->system()};
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 4; ++i) requests.push_back({10 + i, Prompt(5 + 9 * i, i), 3 + 2 * i});
  for (const GenerateRequest& r : requests) self->send(instance, r);
  std::map<int64_t, std::vector<int32_t>> streamed;
  size_t finished = 0;
  while (finished < requests.size()) {
    bool got = false;
    self->receive(
        [&](const GeneratedToken& t) {
          streamed[t.request_id].push_back(t.token);
          if (t.finished) {
            ++finished;
            EXPECT_EQ(t.reason, kFinishedByLength);
          }
          got = true;
        },
        caf::after(std::chrono::seconds(30)) >> [&] {});
    ASSERT_TRUE(got) << "no token within 30 s";
  }
  EXPECT_EQ(streamed, Direct(requests));
  const InstanceStats stats = Stats(self, instance);
  EXPECT_EQ(stats.free_kv_blocks, kBlocks);
  EXPECT_EQ(stats.tokens_generated, 3 + 5 + 7 + 9);
  self->send_exit(instance, caf::exit_reason::user_shutdown);
}

TEST_F(ColocatedInstanceTest, CancelEndsTheStreamAndFreesItsBlocks) {
  caf::actor instance = Spawn();
  caf::scoped_actor self{runtime_->system()};
  self->send(instance, GenerateRequest{1, Prompt(40, 1), 400});
  self->receive([](const GeneratedToken& t) { EXPECT_EQ(t.request_id, 1); });  // it started
  bool cancelled = false;
  self->request(instance, caf::infinite, cancel_atom::value, int64_t{1})
      .receive([&](bool known) { cancelled = known; },
               [&](const caf::error& e) { ADD_FAILURE() << actors::RenderError(e); });
  EXPECT_TRUE(cancelled);
  bool ended = false;
  while (!ended) {
    self->receive([&](const GeneratedToken& t) {
      if (t.finished) {
        EXPECT_EQ(t.reason, kFinishedByCancel);
        ended = true;
      }
    });
  }
  EXPECT_EQ(Stats(self, instance).free_kv_blocks, kBlocks);
  bool again = true;
  self->request(instance, caf::infinite, cancel_atom::value, int64_t{1})
      .receive([&](bool known) { again = known; }, [](const caf::error&) {});
  EXPECT_FALSE(again);
  self->send_exit(instance, caf::exit_reason::user_shutdown);
}

TEST_F(ColocatedInstanceTest, RefusedRequestsAreErrorsNamingTheRequest) {
  caf::actor instance = Spawn();
  caf::scoped_actor self{runtime_->system()};
  std::string message;
  self->request(instance, caf::infinite, GenerateRequest{5, {}, 4})
      .receive([]() { ADD_FAILURE() << "an empty prompt was accepted"; },
               [&](const caf::error& e) { message = actors::RenderError(e); });
  EXPECT_THAT(message, HasSubstr("request 5: the prompt is empty"));
  self->request(instance, caf::infinite, GenerateRequest{6, Prompt(3, 1), 4, -1, -2.0f})
      .receive([]() { ADD_FAILURE() << "a negative temperature was accepted"; },
               [&](const caf::error& e) { message = actors::RenderError(e); });
  EXPECT_THAT(message, HasSubstr("temperature"));
  self->send_exit(instance, caf::exit_reason::user_shutdown);
}

// A client that goes away mid-stream: its requests are cancelled and every block comes back.
TEST_F(ColocatedInstanceTest, AClientThatGoesDownFreesItsRequests) {
  caf::actor instance = Spawn();
  caf::actor client = runtime_->system().spawn([instance](caf::event_based_actor* self) {
    self->send(instance, GenerateRequest{7, Prompt(30, 2), 400});
    self->send(instance, GenerateRequest{8, Prompt(20, 3), 400});
    return caf::behavior{[self](const GeneratedToken&) { self->quit(); }};
  });
  caf::scoped_actor self{runtime_->system()};
  InstanceStats stats;
  for (int i = 0; i < 300; ++i) {  // polls: the down message reaches the instance on its own
    stats = Stats(self, instance);
    if (stats.running == 0 && stats.waiting == 0 && stats.tokens_generated > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(stats.running + stats.waiting, 0);
  EXPECT_EQ(stats.free_kv_blocks, kBlocks);
  self->send_exit(instance, caf::exit_reason::user_shutdown);
}

// DistServe's path in one process: prompts go to a prefill instance, which streams the first
// token and hands the request to a decode instance; the decode instance pulls the KV as bytes
// into its own cache and streams the rest. The tokens are the colocated ones.
TEST_F(ColocatedInstanceTest, DisaggregatedPrefillAndDecodeGenerateTheColocatedTokens) {
  caf::actor decode = Spawn();
  PrefillInstanceOptions prefill_options;
  prefill_options.backend = Backend();
  prefill_options.decode = decode;
  prefill_options.max_batch_tokens = 64;  // several prefill batches
  caf::actor prefill = *SpawnPrefillInstance(runtime_->system(), std::move(prefill_options));
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 6; ++i) requests.push_back({30 + i, Prompt(4 + 11 * i, 50 + i), 1 + 3 * i});
  requests[4].temperature = 0.8f;  // seeded sampling too
  requests[4].top_p = 0.9f;
  requests[4].seed = 77;
  caf::scoped_actor self{runtime_->system()};
  for (const GenerateRequest& r : requests) self->send(prefill, r);
  std::map<int64_t, std::vector<int32_t>> streamed;
  size_t finished = 0;
  while (finished < requests.size()) {
    bool got = false;
    self->receive(
        [&](const GeneratedToken& t) {
          EXPECT_NE(t.reason, kFinishedByCancel) << "request " << t.request_id;
          streamed[t.request_id].push_back(t.token);
          finished += t.finished;
          got = true;
        },
        caf::after(std::chrono::seconds(30)) >> [&] {});
    ASSERT_TRUE(got) << "no token within 30 s";
  }
  EXPECT_EQ(streamed, Direct(requests));
  const InstanceStats prefill_stats = Stats(self, prefill);
  EXPECT_EQ(prefill_stats.running, 0);               // every KV was pulled...
  EXPECT_EQ(prefill_stats.free_kv_blocks, kBlocks);  // ...and its blocks freed
  EXPECT_EQ(Stats(self, decode).free_kv_blocks, kBlocks);
  self->send_exit(prefill, caf::exit_reason::user_shutdown);
  self->send_exit(decode, caf::exit_reason::user_shutdown);
}

// A decode instance whose prefill instance is gone before the KV is pulled ends the request
// as failed (the prefill side lost it), not cancelled, and gets its blocks back.
TEST_F(ColocatedInstanceTest, ALostPrefillInstanceFailsTheRequest) {
  caf::actor decode = Spawn();
  caf::scoped_actor self{runtime_->system()};
  caf::actor gone = runtime_->system().spawn([] { return caf::behavior{[](int) {}}; });
  self->send_exit(gone, caf::exit_reason::kill);
  DecodeRequest request{{40, Prompt(20, 4), 8}, /*first_token=*/7, gone,
                        caf::actor_cast<caf::actor>(self)};
  self->send(decode, request);
  bool ended = false;
  self->receive(
      [&](const GeneratedToken& t) {
        ended = true;
        EXPECT_EQ(t.request_id, 40);
        EXPECT_TRUE(t.finished);
        EXPECT_EQ(t.reason, kFinishedByFailure);
      },
      caf::after(std::chrono::seconds(30)) >> [] {});
  EXPECT_TRUE(ended) << "no answer within 30 s";
  EXPECT_EQ(Stats(self, decode).free_kv_blocks, kBlocks);
  self->send_exit(decode, caf::exit_reason::user_shutdown);
}

TEST(SpawnColocatedInstanceTest, BadOptionsAreErrors) {
  actors::RuntimeOptions runtime_options;
  runtime_options.load_middleman = false;
  runtime_options.scheduler_threads = 1;
  runtime_options.register_types.push_back(RegisterServingMessageTypes);
  std::unique_ptr<actors::Runtime> runtime = *actors::Runtime::Create(runtime_options);
  EXPECT_THAT(SpawnColocatedInstance(runtime->system(), {}).status().message(),
              HasSubstr("no forward backend"));
  ColocatedInstanceOptions too_many;
  std::unique_ptr<model::WeightSource> weights = model::RandomWeights(1);
  too_many.backend = *engine::CreateCpuBackend(*model::ModelPreset("tiny"), *weights, {8});
  ColocatedInstanceOptions bad_share;
  bad_share.backend = *engine::CreateCpuBackend(*model::ModelPreset("tiny"), *weights, {8});
  bad_share.decode_pull_share = 0;
  EXPECT_THAT(SpawnColocatedInstance(runtime->system(), std::move(bad_share)).status().message(),
              HasSubstr("decode_pull_share is 0; it must be in (0, 1]"));
  too_many.num_kv_blocks = 9;
  EXPECT_THAT(SpawnColocatedInstance(runtime->system(), std::move(too_many)).status().message(),
              HasSubstr("size them alike"));
}

}  // namespace
}  // namespace troupe::serving::instance
