// Micro-benchmarks of the runtime's hot paths (Google Benchmark). Run by hand:
//
//   bazel run -c opt //actors:actors_benchmark
//
// Results with their command are in docs/results/actors.md. Not a test: nothing here asserts.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "actors/instrumented_actor.h"
#include "actors/messages.h"
#include "actors/metrics.h"
#include "actors/runtime.h"
#include "actors/test_runtime.h"
#include "caf/all.hpp"
#include "caf/binary_serializer.hpp"

namespace troupe::actors {
namespace {

void BM_CounterIncrement(benchmark::State& state) {
  MetricsRegistry registry;
  Counter* counter = *registry.AddCounter("c_total", "h");
  for (auto _ : state) counter->Increment();
  benchmark::DoNotOptimize(counter->Value());
}
BENCHMARK(BM_CounterIncrement);

void BM_HistogramObserve(benchmark::State& state) {
  MetricsRegistry registry;
  Histogram* histogram = *registry.AddHistogram("h_seconds", "h", LatencyBuckets());
  double value = 0;
  for (auto _ : state) {
    histogram->Observe(value);
    value = value > 1 ? 0 : value + 0.001;
  }
  benchmark::DoNotOptimize(histogram->Count());
}
BENCHMARK(BM_HistogramObserve);

// Rendering /metrics with N histogram series (plus the family headers).
void BM_PrometheusText(benchmark::State& state) {
  MetricsRegistry registry;
  for (int i = 0; i < state.range(0); ++i) {
    (*registry.AddHistogram("latency_seconds", "h", LatencyBuckets(),
                            {{"actor", std::to_string(i)}}))
        ->Observe(0.01);
  }
  for (auto _ : state) benchmark::DoNotOptimize(registry.PrometheusText());
}
BENCHMARK(BM_PrometheusText)->Arg(10)->Arg(100);

// The wire encoding of a membership reply.
void BM_SerializeMembers(benchmark::State& state) {
  caf::actor_system_config config;
  RegisterMessageTypes(config);
  caf::actor_system system(config);
  std::vector<NodeInfo> members(state.range(0), NodeInfo{"node-17", "10.0.0.17", 4100, {0, 1}});
  std::vector<char> buffer;
  for (auto _ : state) {
    buffer.clear();
    caf::binary_serializer sink(system, buffer);
    benchmark::DoNotOptimize(sink(members));
  }
  state.SetBytesProcessed(state.iterations() * buffer.size());
}
BENCHMARK(BM_SerializeMembers)->Arg(4)->Arg(64);

caf::behavior PlainEcho(caf::event_based_actor*) {
  return {[](const Ping& ping) { return ping; }};
}

caf::behavior InstrumentedEcho(caf::stateful_actor<int, InstrumentedActor>* self) {
  self->Instrument("echo", "echo");
  return {[](const Ping& ping) { return ping; }};
}

// A blocking caller's request/reply with a plain CAF actor vs an InstrumentedActor, both in a
// Troupe runtime (metrics registry present).
template <bool kInstrumented>
void BM_BlockingRoundTrip(benchmark::State& state) {
  std::unique_ptr<Runtime> runtime = StartTestRuntime(/*scheduler_threads=*/1);
  caf::actor echo = kInstrumented ? runtime->system().spawn(InstrumentedEcho)
                                  : runtime->system().spawn(PlainEcho);
  runtime->Own(echo);
  caf::scoped_actor self{runtime->system()};
  uint64_t seq = 0;
  for (auto _ : state) {
    self->request(echo, caf::infinite, Ping{seq++, ""})
        .receive([](const Ping&) {}, [&](caf::error&) { state.SkipWithError("no reply"); });
  }
}
BENCHMARK_TEMPLATE(BM_BlockingRoundTrip, false)->Name("BM_BlockingRoundTrip/plain_actor");
BENCHMARK_TEMPLATE(BM_BlockingRoundTrip, true)->Name("BM_BlockingRoundTrip/instrumented_actor");

// The sender's cost of one one-way message to a plain vs an InstrumentedActor, which counts the
// message on enqueue (a locked increment) for its mailbox depth. The receiver drains on a
// scheduler thread meanwhile; every 4096 sends wait for it, so the mailbox stays bounded.
template <bool kInstrumented>
void BM_OneWaySend(benchmark::State& state) {
  std::unique_ptr<Runtime> runtime = StartTestRuntime(/*scheduler_threads=*/1);
  caf::actor echo = kInstrumented ? runtime->system().spawn(InstrumentedEcho)
                                  : runtime->system().spawn(PlainEcho);
  runtime->Own(echo);
  caf::scoped_actor self{runtime->system()};
  uint64_t seq = 0;
  for (auto _ : state) {
    caf::anon_send(echo, Ping{seq, ""});
    if (++seq % 4096 == 0) {
      state.PauseTiming();
      self->request(echo, caf::infinite, Ping{seq, ""}).receive([](const Ping&) {},
                                                              [](caf::error&) {});
      state.ResumeTiming();
    }
  }
}
BENCHMARK_TEMPLATE(BM_OneWaySend, false)->Name("BM_OneWaySend/plain_actor");
BENCHMARK_TEMPLATE(BM_OneWaySend, true)->Name("BM_OneWaySend/instrumented_actor");

}  // namespace
}  // namespace troupe::actors
