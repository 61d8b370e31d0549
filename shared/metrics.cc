// Metric storage and the Prometheus text exposition format, version 0.0.4:
// https://prometheus.io/docs/instrumenting/exposition_formats/
#include "shared/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>
#include <type_traits>
#include <utility>

#include "shared/utf8.h"

namespace mailpulse {
namespace {

constexpr char kOverflowValue[] = "_overflow";
constexpr char kOverflowCounterName[] = "mailpulse_metrics_series_overflow_total";
constexpr char kOverflowCounterHelp[] =
    "Label sets that exceeded a metric family's series bound and were counted in its "
    "_overflow series instead.";

// std::atomic<double>::fetch_add exists in C++20 but is not lock-free everywhere; a CAS loop
// is. compare_exchange compares bit patterns, so a NaN value does not make it spin forever.
void AtomicAdd(std::atomic<double>& target, double delta) noexcept {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
  }
}

void AppendUnsigned(std::uint64_t value, std::string* out) {
  char buf[std::numeric_limits<std::uint64_t>::digits10 + 2];
  const auto result = std::to_chars(buf, buf + sizeof buf, value);
  out->append(buf, result.ptr);
}

// Formats like Go's strconv.FormatFloat(v, 'g', -1, 64), which the Prometheus client libraries
// use: shortest round-trip digits, exponent notation for magnitudes outside [1e-4, 1e6). Matching
// it matters for `le`, which Prometheus compares as a string (le="0.005", not "5e-03").
void AppendDouble(double value, std::string* out) {
  if (std::isnan(value)) {
    out->append("NaN");
    return;
  }
  if (std::isinf(value)) {
    out->append(value > 0 ? "+Inf" : "-Inf");
    return;
  }
  if (value == 0) {  // also -0, which Go's client prints as 0
    out->push_back('0');
    return;
  }
  // Shortest scientific form, e.g. "-1.2345e+08": sign, digits and decimal exponent.
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<std::size_t>(result.ptr - buf));
  const std::size_t e_pos = sci.find('e');
  // to_chars writes no terminating NUL, so parse the exponent within the view: "e+08", "e-05".
  int exponent = 0;
  std::from_chars(sci.data() + e_pos + 2, sci.data() + sci.size(), exponent);
  if (sci[e_pos + 1] == '-') exponent = -exponent;
  // strconv/ftoa.go: with shortest precision, %e is used when exp < -4 || exp >= 6.
  if (exponent < -4 || exponent >= 6) {
    out->append(sci);
    return;
  }
  std::string_view mantissa = sci.substr(0, e_pos);
  if (mantissa.front() == '-') {
    out->push_back('-');
    mantissa.remove_prefix(1);
  }
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  if (exponent < 0) {
    out->append("0.");
    out->append(static_cast<std::size_t>(-exponent - 1), '0');
    out->append(digits);
    return;
  }
  const auto int_digits = static_cast<std::size_t>(exponent) + 1;
  if (digits.size() <= int_digits) {
    out->append(digits);
    out->append(int_digits - digits.size(), '0');
  } else {
    out->append(digits, 0, int_digits);
    out->push_back('.');
    out->append(digits, int_digits);
  }
}

void AppendEscaped(std::string_view text, bool escape_quote, std::string* out) {
  for (char c : text) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"' && escape_quote) {
      out->append("\\\"");
    } else {
      out->push_back(c);
    }
  }
}

// Label values can come from SMTP peers, and Prometheus rejects a whole scrape that contains
// invalid UTF-8, so each bad byte becomes U+FFFD. Done before the series lookup, so two raw
// values that sanitize alike share one series instead of rendering as duplicates.
void SanitizeUtf8(std::string* value) {
  std::string_view rest(*value);
  std::size_t len = 0;
  while (!rest.empty() && (len = Utf8SequenceLength(rest)) != 0) rest.remove_prefix(len);
  if (rest.empty()) return;  // the common case: valid, no copy
  std::string clean(*value, 0, value->size() - rest.size());
  while (!rest.empty()) {
    len = Utf8SequenceLength(rest);
    if (len == 0) {
      clean.append("\xef\xbf\xbd");
      len = 1;
    } else {
      clean.append(rest.substr(0, len));
    }
    rest.remove_prefix(len);
  }
  *value = std::move(clean);
}

// Appends {a="x",b="y"} (plus le="..." for histogram buckets); nothing for an empty set.
void AppendLabels(const std::vector<std::string>& names, const std::vector<std::string>& values,
                  std::string_view le, std::string* out) {
  if (names.empty() && le.empty()) return;
  out->push_back('{');
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out->push_back(',');
    out->append(names[i]);
    out->append("=\"");
    AppendEscaped(values[i], /*escape_quote=*/true, out);
    out->push_back('"');
  }
  if (!le.empty()) {
    if (!names.empty()) out->push_back(',');
    out->append("le=\"");
    out->append(le);
    out->push_back('"');
  }
  out->push_back('}');
}

void AppendSample(std::string_view name, std::string_view suffix,
                  const std::vector<std::string>& names, const std::vector<std::string>& values,
                  std::string_view le, std::string_view value, std::string* out) {
  out->append(name);
  out->append(suffix);
  AppendLabels(names, values, le, out);
  out->push_back(' ');
  out->append(value);
  out->push_back('\n');
}

void AppendSeries(const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Counter& counter,
                  std::string* out) {
  std::string value;
  AppendUnsigned(counter.Value(), &value);
  AppendSample(name, "", names, values, "", value, out);
}

void AppendSeries(const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Gauge& gauge, std::string* out) {
  std::string value;
  AppendDouble(gauge.Value(), &value);
  AppendSample(name, "", names, values, "", value, out);
}

void AppendSeries(const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Histogram& histogram,
                  std::string* out) {
  const Histogram::Snapshot snapshot = histogram.Take();
  std::string le;
  std::string value;
  for (std::size_t i = 0; i <= snapshot.upper_bounds.size(); ++i) {
    le.clear();
    value.clear();
    if (i < snapshot.upper_bounds.size()) {
      AppendDouble(snapshot.upper_bounds[i], &le);
    } else {
      le = "+Inf";
    }
    AppendUnsigned(snapshot.cumulative_counts[i], &value);
    AppendSample(name, "_bucket", names, values, le, value, out);
  }
  value.clear();
  AppendDouble(snapshot.sum, &value);
  AppendSample(name, "_sum", names, values, "", value, out);
  value.clear();
  AppendUnsigned(snapshot.count, &value);
  AppendSample(name, "_count", names, values, "", value, out);
}

template <typename M>
constexpr std::string_view TypeName() {
  if constexpr (std::is_same_v<M, Counter>) {
    return "counter";
  } else if constexpr (std::is_same_v<M, Gauge>) {
    return "gauge";
  } else {
    static_assert(std::is_same_v<M, Histogram>);
    return "histogram";
  }
}

}  // namespace

void Gauge::Add(double delta) noexcept { AtomicAdd(value_, delta); }

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  std::erase_if(bounds_, [](double b) { return !std::isfinite(b); });
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
}

void Histogram::Observe(double v) noexcept {
  // le is inclusive: the first bound >= v. NaN compares false with every bound, so it is
  // routed to +Inf explicitly rather than landing in the first bucket.
  const std::size_t index =
      std::isnan(v) ? bounds_.size()
                    : static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                               bounds_.begin());
  buckets_[index].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot snapshot;
  snapshot.upper_bounds = bounds_;
  snapshot.cumulative_counts.reserve(bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts.push_back(running);
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

std::vector<double> DefaultSecondsBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

template <typename M>
Family<M>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                  std::size_t max_series, std::vector<double> bounds, Counter* overflow_counter)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      max_series_(max_series),
      bounds_(std::move(bounds)),
      overflow_counter_(overflow_counter) {
  // A label-less family has exactly one series; creating it now makes it render as 0 before
  // anything touches it, and keeps it out of reach of the series bound.
  if (label_names_.empty()) series_.emplace(std::vector<std::string>{}, Make());
}

template <typename M>
M& Family<M>::WithLabels(std::initializer_list<std::string_view> label_values) {
  std::vector<std::string> values;
  values.reserve(label_names_.size());
  for (std::string_view value : label_values) {
    if (values.size() == label_names_.size()) break;
    values.emplace_back(value);
  }
  return Get(std::move(values));
}

template <typename M>
M& Family<M>::WithLabels(const std::vector<std::string>& label_values) {
  const std::size_t n = std::min(label_values.size(), label_names_.size());
  return Get(std::vector<std::string>(label_values.begin(), label_values.begin() + n));
}

template <typename M>
M& Family<M>::Get(std::vector<std::string> values) {
  values.resize(label_names_.size());  // a caller's missing values count as ""
  for (std::string& value : values) SanitizeUtf8(&value);
  std::lock_guard lock(mu_);
  if (auto it = series_.find(values); it != series_.end()) return *it->second;
  const std::size_t regular = series_.size() - (overflow_series_ != nullptr ? 1 : 0);
  if (regular < max_series_) return *series_.emplace(std::move(values), Make()).first->second;
  if (overflow_counter_ != nullptr) overflow_counter_->Inc();
  if (overflow_series_ == nullptr) {
    std::unique_ptr<M>& slot =
        series_[std::vector<std::string>(label_names_.size(), kOverflowValue)];
    if (slot == nullptr) slot = Make();
    overflow_series_ = slot.get();
  }
  return *overflow_series_;
}

template <typename M>
std::size_t Family<M>::Remove(const std::vector<std::string>& label_value_prefix) {
  std::vector<std::string> prefix = label_value_prefix;
  if (prefix.size() > label_names_.size() || (prefix.empty() && label_names_.empty())) return 0;
  for (std::string& value : prefix) SanitizeUtf8(&value);
  std::lock_guard lock(mu_);
  std::size_t removed = 0;
  for (auto it = series_.begin(); it != series_.end();) {
    if (!std::equal(prefix.begin(), prefix.end(), it->first.begin())) {
      ++it;
      continue;
    }
    if (it->second.get() == overflow_series_) overflow_series_ = nullptr;
    it = series_.erase(it);
    ++removed;
  }
  return removed;
}

template <typename M>
std::unique_ptr<M> Family<M>::Make() const {
  if constexpr (std::is_same_v<M, Histogram>) {
    return std::make_unique<Histogram>(bounds_);
  } else {
    return std::make_unique<M>();
  }
}

template <typename M>
void Family<M>::Render(std::string* out) const {
  // An empty HELP line is legal but useless; leaving it out is what the Go client does too.
  if (!help_.empty()) {
    out->append("# HELP ").append(name_).push_back(' ');
    AppendEscaped(help_, /*escape_quote=*/false, out);
    out->push_back('\n');
  }
  out->append("# TYPE ").append(name_).push_back(' ');
  out->append(TypeName<M>()).push_back('\n');
  std::lock_guard lock(mu_);
  for (const auto& [values, metric] : series_)
    AppendSeries(name_, label_names_, values, *metric, out);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

MetricsRegistry::MetricsRegistry() {
  overflow_counter_ = &AddCounter(kOverflowCounterName, kOverflowCounterHelp).WithLabels({});
}

template <typename M>
Family<M>& MetricsRegistry::Add(const std::string& name, const std::string& help,
                                std::vector<std::string> label_names, std::size_t max_series,
                                std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  bool name_taken = false;
  for (Entry& entry : entries_) {
    if (std::visit([](const auto& family) -> const std::string& { return family->name(); },
                   entry.family) != name) {
      continue;
    }
    if (auto* same_type = std::get_if<std::unique_ptr<Family<M>>>(&entry.family)) {
      return **same_type;
    }
    name_taken = true;
  }
  // Family's constructor is private to everyone but the registry, so no make_unique.
  std::unique_ptr<Family<M>> family(new Family<M>(name, help, std::move(label_names), max_series,
                                                  std::move(bounds), overflow_counter_));
  Family<M>& result = *family;
  entries_.push_back(Entry{std::move(family), !name_taken});
  return result;
}

CounterFamily& MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                           std::vector<std::string> label_names,
                                           std::size_t max_series) {
  return Add<Counter>(name, help, std::move(label_names), max_series, {});
}

GaugeFamily& MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                       std::vector<std::string> label_names,
                                       std::size_t max_series) {
  return Add<Gauge>(name, help, std::move(label_names), max_series, {});
}

HistogramFamily& MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                               std::vector<std::string> label_names,
                                               std::vector<double> upper_bounds,
                                               std::size_t max_series) {
  return Add<Histogram>(name, help, std::move(label_names), max_series, std::move(upper_bounds));
}

std::string MetricsRegistry::RenderPrometheus() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const Entry& entry : entries_) {
    if (!entry.rendered) continue;
    std::visit([&out](const auto& family) { family->Render(&out); }, entry.family);
  }
  return out;
}

}  // namespace mailpulse
