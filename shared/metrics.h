// Metrics registry: counters, gauges and histograms grouped in labelled families, rendered in
// the Prometheus text exposition format (version 0.0.4).
//
// Thread-safe. Family::WithLabels() takes a mutex and returns a reference that stays valid for
// the registry's lifetime, so hot paths resolve their series once and then only touch atomics
// (Counter::Inc is one relaxed atomic add). Label sets are bounded: a family holds at most
// max_series series; label sets beyond that all share one overflow series whose label values
// are "_overflow", and mailpulse_metrics_series_overflow_total counts the misses.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mailpulse {

class Counter {
 public:
  void Inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void Add(double delta) noexcept;
  double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Cumulative histogram with fixed upper bounds (le), plus +Inf, sum and count. Bounds are
// sorted and de-duplicated; non-finite ones are dropped (+Inf is always implicit). A NaN
// observation counts only in +Inf and makes the sum NaN, as the Prometheus Go client does.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v) noexcept;

  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<std::uint64_t> cumulative_counts;  // one per bound, then +Inf
    double sum = 0;
    std::uint64_t count = 0;
  };
  Snapshot Take() const;

 private:
  std::vector<double> bounds_;
  // Per-bucket (not cumulative) counts, bounds_.size() + 1. There is no separate count: Take()
  // sums the buckets, so _count always equals the +Inf bucket even under concurrent Observe().
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

// Default histogram bounds for durations in seconds (1 ms .. 60 s).
std::vector<double> DefaultSecondsBuckets();

enum class MetricType { kCounter, kGauge, kHistogram };

class MetricsRegistry;

// A named metric with a fixed list of label names; each distinct label-value tuple is a series.
template <typename M>
class Family {
 public:
  // label_values must have one value per label name (missing ones are treated as "").
  M& WithLabels(std::initializer_list<std::string_view> label_values);
  M& WithLabels(const std::vector<std::string>& label_values);

  // Removes every series whose leading label values equal `label_value_prefix` (a full tuple
  // removes one series; {target} removes all of that target's). References to removed series
  // dangle, so only the code that owns those label values may call it, when it forgets them
  // (a target dropped by a reload). Returns how many series went.
  std::size_t Remove(const std::vector<std::string>& label_value_prefix);

  const std::string& name() const { return name_; }

 private:
  friend class MetricsRegistry;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::size_t max_series, std::vector<double> bounds, Counter* overflow_counter);
  M& Get(std::vector<std::string> values);
  std::unique_ptr<M> Make() const;
  // Appends HELP, TYPE and every series in exposition format.
  void Render(std::string* out) const;

  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::size_t max_series_;
  std::vector<double> bounds_;  // histograms only
  Counter* overflow_counter_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> series_;
  M* overflow_series_ = nullptr;  // in series_ once the bound was hit
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class MetricsRegistry {
 public:
  MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registering a name twice returns the existing family (its help/labels are kept).
  CounterFamily& AddCounter(const std::string& name, const std::string& help,
                            std::vector<std::string> label_names = {},
                            std::size_t max_series = 1000);
  GaugeFamily& AddGauge(const std::string& name, const std::string& help,
                        std::vector<std::string> label_names = {}, std::size_t max_series = 1000);
  HistogramFamily& AddHistogram(const std::string& name, const std::string& help,
                                std::vector<std::string> label_names,
                                std::vector<double> upper_bounds, std::size_t max_series = 1000);

  // Prometheus text format, families in registration order, series sorted by label values.
  // Label values are escaped (\\, \", \n); HELP text escapes \\ and \n.
  std::string RenderPrometheus() const;

 private:
  struct Entry {
    std::variant<std::unique_ptr<CounterFamily>, std::unique_ptr<GaugeFamily>,
                 std::unique_ptr<HistogramFamily>>
        family;
    // False when the name was already taken by a family of another type: the caller still gets
    // a working family, but exporting both would make the exposition invalid.
    bool rendered = true;
  };
  template <typename M>
  Family<M>& Add(const std::string& name, const std::string& help,
                 std::vector<std::string> label_names, std::size_t max_series,
                 std::vector<double> bounds);

  mutable std::mutex mu_;
  std::deque<Entry> entries_;  // deque: references stay valid as families are added
  Counter* overflow_counter_ = nullptr;
};

}  // namespace mailpulse
