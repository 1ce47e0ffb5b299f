#include "actors/metrics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace troupe::actors {
namespace {

void AtomicAdd(std::atomic<double>& target, double delta) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
  }
}

// IsValidName checks Prometheus' grammar: [a-zA-Z_:][a-zA-Z0-9_:]* (no ':' in label names).
bool IsValidName(const std::string& name, bool allow_colon) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
           (allow_colon && c == ':');
  });
}

std::string Escape(const std::string& text, bool quote) {
  std::string out;
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  return absl::StrFormat("%.10g", value);
}

std::string RenderLabels(const Labels& labels, const std::string& extra_name = "",
                         const std::string& extra_value = "") {
  std::vector<std::string> parts;
  for (const auto& [name, value] : labels) {
    parts.push_back(absl::StrCat(name, "=\"", Escape(value, true), "\""));
  }
  if (!extra_name.empty()) parts.push_back(absl::StrCat(extra_name, "=\"", extra_value, "\""));
  if (parts.empty()) return "";
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

const char* TypeText(int type) {
  static const char* const kNames[] = {"counter", "gauge", "histogram"};
  return kNames[type];
}

}  // namespace

void Gauge::Add(double delta) { AtomicAdd(value_, delta); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double value) {
  size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, value);
}

uint64_t Histogram::BucketOnly(size_t i) const {
  return buckets_[std::min(i, bounds_.size())].load(std::memory_order_relaxed);
}

uint64_t Histogram::BucketCount(size_t i) const {
  uint64_t total = 0;
  for (size_t b = 0; b <= std::min(i, bounds_.size()); ++b) {
    total += buckets_[b].load(std::memory_order_relaxed);
  }
  return total;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> bounds;
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) bounds.push_back(bound);
  return bounds;
}

CallbackGauge::CallbackGauge(CallbackGauge&& other) noexcept
    : registry_(std::exchange(other.registry_, nullptr)), id_(other.id_) {}

CallbackGauge& CallbackGauge::operator=(CallbackGauge&& other) noexcept {
  if (this != &other) {
    if (registry_ != nullptr) registry_->RemoveCallback(id_);
    registry_ = std::exchange(other.registry_, nullptr);
    id_ = other.id_;
  }
  return *this;
}

CallbackGauge::~CallbackGauge() {
  if (registry_ != nullptr) registry_->RemoveCallback(id_);
}

absl::StatusOr<MetricsRegistry::Series*> MetricsRegistry::FindOrAdd(const std::string& name,
                                                                   const std::string& help,
                                                                   const Labels& labels,
                                                                   Type type, bool always_new) {
  if (!IsValidName(name, true)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metric name \"", name, "\" is invalid; use [a-zA-Z_:][a-zA-Z0-9_:]*"));
  }
  for (const auto& [label, value] : labels) {
    if (!IsValidName(label, false) || label == "le" || label.rfind("__", 0) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("label name \"", label, "\" of metric \"", name,
                       "\" is invalid; use [a-zA-Z_][a-zA-Z0-9_]*, not \"le\" or a \"__\" prefix"));
    }
  }
  auto [it, inserted] = families_.try_emplace(name, Family{type, help, {}});
  Family& family = it->second;
  if (family.type != type) {
    return absl::AlreadyExistsError(
        absl::StrCat("metric \"", name, "\" is already a ", TypeText(static_cast<int>(family.type)),
                     "; it cannot also be a ", TypeText(static_cast<int>(type)),
                     "; pick another name"));
  }
  if (!always_new) {
    for (const std::unique_ptr<Series>& series : family.series) {
      if (series->labels == labels && !series->callback) return series.get();
    }
  }
  family.series.push_back(std::make_unique<Series>());
  family.series.back()->labels = labels;
  return family.series.back().get();
}

absl::StatusOr<Counter*> MetricsRegistry::AddCounter(const std::string& name,
                                                     const std::string& help,
                                                     const Labels& labels) {
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<Series*> series = FindOrAdd(name, help, labels, Type::kCounter, false);
  if (!series.ok()) return series.status();
  if (!(*series)->counter) (*series)->counter = std::make_unique<Counter>();
  return (*series)->counter.get();
}

absl::StatusOr<Gauge*> MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                                 const Labels& labels) {
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<Series*> series = FindOrAdd(name, help, labels, Type::kGauge, false);
  if (!series.ok()) return series.status();
  if (!(*series)->gauge) (*series)->gauge = std::make_unique<Gauge>();
  return (*series)->gauge.get();
}

absl::StatusOr<Histogram*> MetricsRegistry::AddHistogram(const std::string& name,
                                                         const std::string& help,
                                                         std::vector<double> bounds,
                                                         const Labels& labels) {
  if (bounds.empty() || !std::is_sorted(bounds.begin(), bounds.end()) ||
      std::adjacent_find(bounds.begin(), bounds.end()) != bounds.end() ||
      !std::all_of(bounds.begin(), bounds.end(), [](double b) { return std::isfinite(b); })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "histogram \"", name, "\" needs finite, strictly increasing bucket bounds; got [",
        absl::StrJoin(bounds, ", "), "]"));
  }
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<Series*> series = FindOrAdd(name, help, labels, Type::kHistogram, false);
  if (!series.ok()) return series.status();
  if (!(*series)->histogram) {
    (*series)->histogram = std::make_unique<Histogram>(std::move(bounds));
  } else if ((*series)->histogram->bounds() != bounds) {
    return absl::AlreadyExistsError(absl::StrCat(
        "histogram \"", name, "\" already exists with other bucket bounds; reuse the same ones"));
  }
  return (*series)->histogram.get();
}

absl::StatusOr<CallbackGauge> MetricsRegistry::AddGaugeCallback(const std::string& name,
                                                               const std::string& help,
                                                               const Labels& labels,
                                                               std::function<double()> read) {
  return AddCallback(name, help, labels, Type::kGauge, std::move(read));
}

absl::StatusOr<CallbackGauge> MetricsRegistry::AddCounterCallback(const std::string& name,
                                                                 const std::string& help,
                                                                 const Labels& labels,
                                                                 std::function<double()> read) {
  return AddCallback(name, help, labels, Type::kCounter, std::move(read));
}

absl::StatusOr<CallbackGauge> MetricsRegistry::AddCallback(const std::string& name,
                                                          const std::string& help,
                                                          const Labels& labels, Type type,
                                                          std::function<double()> read) {
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<Series*> series = FindOrAdd(name, help, labels, type, true);
  if (!series.ok()) return series.status();
  (*series)->callback = std::move(read);
  (*series)->callback_id = next_callback_id_++;
  return CallbackGauge(this, (*series)->callback_id);
}

void MetricsRegistry::RemoveCallback(uint64_t id) {
  absl::MutexLock lock(&mutex_);
  for (auto& [name, family] : families_) {
    auto& all = family.series;
    all.erase(std::remove_if(all.begin(), all.end(),
                             [id](const std::unique_ptr<Series>& s) {
                               return s->callback && s->callback_id == id;
                             }),
              all.end());
  }
}

std::string MetricsRegistry::PrometheusText() const {
  absl::MutexLock lock(&mutex_);
  std::string out;
  for (const auto& [name, family] : families_) {
    if (family.series.empty()) continue;
    absl::StrAppend(&out, "# HELP ", name, " ", Escape(family.help, false), "\n");
    absl::StrAppend(&out, "# TYPE ", name, " ", TypeText(static_cast<int>(family.type)), "\n");
    for (const std::unique_ptr<Series>& series : family.series) {
      switch (family.type) {
        case Type::kCounter:
        case Type::kGauge: {
          double value = series->callback  ? series->callback()
                         : series->counter ? static_cast<double>(series->counter->Value())
                                           : series->gauge->Value();
          absl::StrAppend(&out, name, RenderLabels(series->labels), " ", FormatValue(value),
                          "\n");
          break;
        }
        case Type::kHistogram: {
          const Histogram& h = *series->histogram;
          uint64_t cumulative = 0;
          for (size_t i = 0; i <= h.bounds().size(); ++i) {
            cumulative += h.BucketOnly(i);
            std::string le = i < h.bounds().size() ? FormatValue(h.bounds()[i]) : "+Inf";
            absl::StrAppend(&out, name, "_bucket", RenderLabels(series->labels, "le", le), " ",
                            cumulative, "\n");
          }
          absl::StrAppend(&out, name, "_sum", RenderLabels(series->labels), " ",
                          FormatValue(h.Sum()), "\n");
          absl::StrAppend(&out, name, "_count", RenderLabels(series->labels), " ", h.Count(),
                          "\n");
          break;
        }
      }
    }
  }
  return out;
}

}  // namespace troupe::actors
