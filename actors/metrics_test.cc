#include "actors/metrics.h"

#include <httplib.h>

#include <thread>

#include "actors/metrics_http.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsRegistryTest, CountersGaugesAndHistogramsRenderInPrometheusFormat) {
  MetricsRegistry registry;
  Counter* requests = *registry.AddCounter("troupe_requests_total", "Requests served.",
                                           {{"node", "n0"}});
  requests->Increment();
  requests->Increment(4);
  Gauge* depth = *registry.AddGauge("troupe_queue_depth", "Queued items.");
  depth->Set(7);
  depth->Add(-2.5);
  Histogram* latency =
      *registry.AddHistogram("troupe_latency_seconds", "Latency.", {0.1, 1.0}, {{"op", "x"}});
  latency->Observe(0.05);
  latency->Observe(0.1);  // Upper bounds are inclusive.
  latency->Observe(0.5);
  latency->Observe(3.0);

  std::string text = registry.PrometheusText();
  EXPECT_THAT(text, HasSubstr("# HELP troupe_requests_total Requests served.\n"
                              "# TYPE troupe_requests_total counter\n"
                              "troupe_requests_total{node=\"n0\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE troupe_queue_depth gauge\ntroupe_queue_depth 4.5\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE troupe_latency_seconds histogram\n"
                              "troupe_latency_seconds_bucket{op=\"x\",le=\"0.1\"} 2\n"
                              "troupe_latency_seconds_bucket{op=\"x\",le=\"1\"} 3\n"
                              "troupe_latency_seconds_bucket{op=\"x\",le=\"+Inf\"} 4\n"
                              "troupe_latency_seconds_sum{op=\"x\"} 3.65\n"
                              "troupe_latency_seconds_count{op=\"x\"} 4\n"));
}

TEST(MetricsRegistryTest, SameNameAndLabelsGiveTheSameMetric) {
  MetricsRegistry registry;
  Counter* a = *registry.AddCounter("c_total", "help", {{"k", "1"}});
  Counter* b = *registry.AddCounter("c_total", "help", {{"k", "1"}});
  Counter* c = *registry.AddCounter("c_total", "help", {{"k", "2"}});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  a->Increment();
  EXPECT_EQ(b->Value(), 1u);
  EXPECT_EQ(c->Value(), 0u);
}

TEST(MetricsRegistryTest, LabelValuesAreEscaped) {
  MetricsRegistry registry;
  (*registry.AddCounter("c_total", "line one\nline \\two", {{"path", "a\"b\\c\nd"}}))->Increment();
  std::string text = registry.PrometheusText();
  EXPECT_THAT(text, HasSubstr("# HELP c_total line one\\nline \\\\two\n"));
  EXPECT_THAT(text, HasSubstr("c_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

TEST(MetricsRegistryTest, RejectsBadNamesTypeConflictsAndBadBuckets) {
  MetricsRegistry registry;
  for (const char* bad : {"", "9lives", "has space", "dash-ed"}) {
    absl::StatusOr<Counter*> c = registry.AddCounter(bad, "h");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status().message(), HasSubstr("[a-zA-Z_:]"));
  }
  for (const char* bad : {"le", "__reserved", "a:b", ""}) {
    absl::StatusOr<Gauge*> g = registry.AddGauge("g", "h", {{bad, "v"}});
    ASSERT_FALSE(g.ok()) << bad;
    EXPECT_THAT(g.status().message(), HasSubstr("label name"));
  }
  ASSERT_TRUE(registry.AddCounter("x_total", "h").ok());
  absl::StatusOr<Gauge*> conflict = registry.AddGauge("x_total", "h");
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(conflict.status().message(), HasSubstr("already a counter"));

  for (std::vector<double> bad : std::vector<std::vector<double>>{{}, {2, 1}, {1, 1}}) {
    absl::StatusOr<Histogram*> h = registry.AddHistogram("h_seconds", "h", bad);
    ASSERT_FALSE(h.ok());
    EXPECT_THAT(h.status().message(), HasSubstr("strictly increasing"));
  }
  ASSERT_TRUE(registry.AddHistogram("h2_seconds", "h", {1, 2}).ok());
  EXPECT_FALSE(registry.AddHistogram("h2_seconds", "h", {1, 3}).ok());
}

TEST(MetricsRegistryTest, CallbackGaugesLiveAsLongAsTheirHandle) {
  MetricsRegistry registry;
  double depth = 3;
  {
    CallbackGauge handle =
        *registry.AddGaugeCallback("mailbox_depth", "Depth.", {{"actor", "a"}}, [&] {
          return depth;
        });
    EXPECT_THAT(registry.PrometheusText(), HasSubstr("mailbox_depth{actor=\"a\"} 3\n"));
    depth = 11;
    EXPECT_THAT(registry.PrometheusText(), HasSubstr("mailbox_depth{actor=\"a\"} 11\n"));
    CallbackGauge moved = std::move(handle);
    EXPECT_THAT(registry.PrometheusText(), HasSubstr("mailbox_depth{actor=\"a\"} 11\n"));
  }
  EXPECT_THAT(registry.PrometheusText(), Not(HasSubstr("mailbox_depth{")));
}

TEST(MetricsRegistryTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry registry;
  Counter* counter = *registry.AddCounter("n_total", "h");
  Histogram* histogram = *registry.AddHistogram("v", "h", {0.5});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        counter->Increment();
        histogram->Observe(1.0);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counter->Value(), 40000u);
  EXPECT_EQ(histogram->Count(), 40000u);
  EXPECT_EQ(histogram->Sum(), 40000.0);
  EXPECT_EQ(histogram->BucketCount(0), 0u);
}

TEST(ExponentialBucketsTest, MultipliesByTheFactor) {
  EXPECT_EQ(ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
}

TEST(MetricsHttpServerTest, ServesMetricsOverHttp) {
  MetricsRegistry registry;
  (*registry.AddCounter("served_total", "h"))->Increment(3);
  MetricsHttpServer server(&registry);
  absl::StatusOr<int> port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  httplib::Client client("127.0.0.1", *port);
  httplib::Result response = client.Get("/metrics");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200);
  EXPECT_THAT(response->get_header_value("Content-Type"), HasSubstr("text/plain"));
  EXPECT_THAT(response->body, HasSubstr("served_total 3\n"));

  httplib::Result missing = client.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_THAT(missing->body, HasSubstr("try GET /metrics"));
  server.Stop();
  server.Stop();
}

TEST(MetricsHttpServerTest, TakenPortIsAClearError) {
  MetricsRegistry registry;
  MetricsHttpServer first(&registry);
  absl::StatusOr<int> port = first.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok());
  MetricsHttpServer second(&registry);
  absl::StatusOr<int> clash = second.Start("127.0.0.1", *port);
  ASSERT_FALSE(clash.ok());
  EXPECT_THAT(clash.status().message(), HasSubstr("Pick another metrics_port"));
  EXPECT_FALSE(first.Start("127.0.0.1", 0).ok());  // Already running.
}

}  // namespace
}  // namespace troupe::actors
