// What the daemon makes of a finished journey (probe/correlator.h): its metrics, one log line
// with the whole timeline, and the JSON of `GET /journeys` and `mailpulse-probe trace`.
// RoundTripMetrics is used from the daemon's loop only (the registry is thread-safe); the
// formatting functions are pure and thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "probe/correlator.h"
#include "shared/metrics.h"

namespace mailpulse {

class RoundTripMetrics {
 public:
  explicit RoundTripMetrics(MetricsRegistry* registry);

  // A journey Expire() returned: its round trip and hop latencies, its outcome.
  void RecordFinished(const Journey& journey);
  void RecordLate(const std::string& target) { late_.WithLabels({target}).Inc(); }
  void SetPending(std::size_t pending) { pending_->Set(static_cast<double>(pending)); }
  // The correlator's running count of dropped orphans (Correlator::orphans_dropped()).
  void SetOrphansDropped(std::uint64_t total) {
    if (total > orphans_->Value()) orphans_->Inc(total - orphans_->Value());
  }
  void ForgetTarget(const std::string& target);

 private:
  HistogramFamily& roundtrip_;
  HistogramFamily& hop_latency_;
  CounterFamily& outcomes_;
  GaugeFamily& last_;
  CounterFamily& late_;
  Gauge* pending_;
  Counter* orphans_;
};

// "journey 9f...e1 target delivery: delivered in 0.412 s: sent 20:01:02.345678, edge +0.031 s
// (qid 4Xb..., tls), mx +0.380 s (qid 4Xc...) delivered". Bounces add each recipient's action,
// status and diagnostic; lost journeys say where they were last seen.
std::string JourneyLogLine(const Journey& journey);

nlohmann::json JourneyJson(const Journey& journey);

}  // namespace mailpulse
