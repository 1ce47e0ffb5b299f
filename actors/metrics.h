// A process-wide metrics registry exported in Prometheus text format.
//
// Counters, gauges and histograms are lock-free to update; registration and export take a lock.
// A metric is identified by its name and labels: asking twice for the same pair returns the same
// object, so callers need not keep the pointer around. Gauges may also be callbacks, read at
// export time (mailbox depths are exported this way by InstrumentedActor).
//
//   MetricsRegistry registry;
//   absl::StatusOr<Counter*> served = registry.AddCounter(
//       "troupe_requests_total", "Requests served.", {{"node", "n0"}});
//   (*served)->Increment();
//   std::string text = registry.PrometheusText();
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace troupe::actors {

// Labels are (name, value) pairs, e.g. {{"node", "n0"}, {"actor", "router"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

// Counter is a monotonically increasing count.
class Counter {
 public:
  void Increment(uint64_t by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Gauge is a value that goes up and down.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Histogram counts observations into buckets with fixed upper bounds.
class Histogram {
 public:
  // `bounds` are the finite upper bounds, strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);

  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // BucketCount is the number of observations <= bounds()[i] (i == bounds().size(): all).
  uint64_t BucketCount(size_t i) const;
  // BucketOnly is the number of observations in bucket i alone: (bounds()[i-1], bounds()[i]].
  uint64_t BucketOnly(size_t i) const;
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // Non-cumulative; one extra for +Inf.
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// LatencyBuckets are bounds in seconds from 100 µs to 60 s, for request latencies.
std::vector<double> LatencyBuckets();

// ExponentialBuckets returns `count` bounds: start, start*factor, start*factor^2, ...
std::vector<double> ExponentialBuckets(double start, double factor, int count);

class MetricsRegistry;

// CallbackGauge keeps a callback metric (gauge or counter) registered; destroying it
// unregisters the callback.
class CallbackGauge {
 public:
  CallbackGauge() = default;
  CallbackGauge(CallbackGauge&& other) noexcept;
  CallbackGauge& operator=(CallbackGauge&& other) noexcept;
  ~CallbackGauge();

 private:
  friend class MetricsRegistry;
  CallbackGauge(MetricsRegistry* registry, uint64_t id) : registry_(registry), id_(id) {}
  MetricsRegistry* registry_ = nullptr;
  uint64_t id_ = 0;
};

// MetricsRegistry owns every metric of a process. It must outlive the metrics it hands out.
class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Add* returns the metric called `name` with `labels`, creating it on first use. Fails if the
  // name or a label name is not a valid Prometheus name, or if `name` is already used by a
  // metric of another type.
  absl::StatusOr<Counter*> AddCounter(const std::string& name, const std::string& help,
                                      const Labels& labels = {});
  absl::StatusOr<Gauge*> AddGauge(const std::string& name, const std::string& help,
                                  const Labels& labels = {});
  absl::StatusOr<Histogram*> AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<double> bounds, const Labels& labels = {});

  // AddGaugeCallback exports `read()` as a gauge until the returned handle is destroyed.
  // `read` runs on the exporting thread, under the registry's lock: keep it cheap.
  absl::StatusOr<CallbackGauge> AddGaugeCallback(const std::string& name,
                                                 const std::string& help, const Labels& labels,
                                                 std::function<double()> read);
  // AddCounterCallback is the same for a counter whose value lives elsewhere (it must never
  // decrease).
  absl::StatusOr<CallbackGauge> AddCounterCallback(const std::string& name,
                                                   const std::string& help, const Labels& labels,
                                                   std::function<double()> read);

  // PrometheusText renders every metric in the Prometheus text exposition format 0.0.4.
  std::string PrometheusText() const;

 private:
  friend class CallbackGauge;
  enum class Type { kCounter, kGauge, kHistogram };

  struct Series {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> callback;
    uint64_t callback_id = 0;
  };

  struct Family {
    Type type;
    std::string help;
    std::vector<std::unique_ptr<Series>> series;
  };

  absl::StatusOr<CallbackGauge> AddCallback(const std::string& name, const std::string& help,
                                            const Labels& labels, Type type,
                                            std::function<double()> read);
  absl::StatusOr<Series*> FindOrAdd(const std::string& name, const std::string& help,
                                    const Labels& labels, Type type, bool always_new)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void RemoveCallback(uint64_t id);

  mutable absl::Mutex mutex_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mutex_);
  uint64_t next_callback_id_ ABSL_GUARDED_BY(mutex_) = 1;
};

}  // namespace troupe::actors
