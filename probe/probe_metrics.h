// The scheduling daemon's Prometheus metrics (docs/metrics.md, "mailpulse-probe"): per target
// the last check's success, duration, phase durations and reply codes, histograms of phase
// durations, check counts by result, the certificate's expiry and the TLS version; plus the
// daemon's own health. Labels are bounded: target names come from the config, phases and
// results from fixed lists. Thread-compatible: used from the daemon's event loop only (the
// registry itself is thread-safe).
#pragma once

#include <cstdint>
#include <string>

#include "probe/check_runner.h"
#include "probe/check_verdict.h"
#include "shared/metrics.h"

namespace mailpulse {

class ProbeMetrics {
 public:
  // Registers every family in `registry`, which must outlive this.
  ProbeMetrics(MetricsRegistry* registry, const std::string& probe_name);

  // Records a finished check of `target`, which ended at `now_unix` (seconds).
  void RecordCheck(const std::string& target, const CheckResult& result,
                   const CheckVerdict& verdict, bool implicit_tls, double now_unix);
  // Drops every series of a target that is no longer configured.
  void ForgetTarget(const std::string& target);

  void SetTargets(std::size_t count) { targets_->Set(static_cast<double>(count)); }
  void SetRunning(std::size_t count) { running_->Set(static_cast<double>(count)); }
  void RecordScheduleLag(double seconds) { schedule_lag_->Observe(seconds); }
  void RecordReload(bool ok, double now_unix);
  void RecordEvent(const std::string& kind) { events_.WithLabels({kind}).Inc(); }
  void SetEventPeers(std::size_t connected);
  Counter* event_peers_dropped() const { return event_peers_dropped_; }
  Counter* report_dropped() const { return report_dropped_; }
  Counter* report_sent() const { return report_sent_; }

 private:
  GaugeFamily& success_;
  GaugeFamily& failures_in_a_row_;
  GaugeFamily& duration_;
  GaugeFamily& phase_duration_;
  HistogramFamily& phase_histogram_;
  CounterFamily& checks_;
  GaugeFamily& reply_code_;
  GaugeFamily& state_;
  GaugeFamily& last_check_;
  GaugeFamily& cert_not_after_;
  GaugeFamily& tls_version_;
  GaugeFamily& tls_resumed_;
  CounterFamily& reloads_;
  CounterFamily& events_;
  Gauge* targets_;
  Gauge* running_;
  Histogram* schedule_lag_;
  Gauge* reload_ok_;
  Gauge* reload_time_;
  Gauge* event_peers_;
  Counter* event_peers_dropped_;
  Counter* report_dropped_;
  Counter* report_sent_;
};

}  // namespace mailpulse
