#include "probe/probe_metrics.h"

#include <chrono>
#include <string_view>
#include <vector>

namespace mailpulse {
namespace {

// SMTP phases on loopback take tens of microseconds, over the Internet up to seconds.
std::vector<double> PhaseBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
}

constexpr std::size_t kPerTargetSeries = 10000;  // targets × phases stay far below

}  // namespace

ProbeMetrics::ProbeMetrics(MetricsRegistry* r, const std::string& probe_name)
    : success_(r->AddGauge("mailpulse_probe_success",
                           "1 if the last check of the target succeeded, else 0.", {"target"})),
      failures_in_a_row_(r->AddGauge(
          "mailpulse_probe_consecutive_failures",
          "Checks of the target that failed in a row, up to the last one (0 after a success).",
          {"target"})),
      duration_(r->AddGauge("mailpulse_probe_duration_seconds",
                            "Total time of the last check of the target.", {"target"})),
      phase_duration_(r->AddGauge("mailpulse_probe_phase_duration_seconds",
                                  "Time of each phase reached in the last check of the target.",
                                  {"target", "phase"}, kPerTargetSeries)),
      phase_histogram_(r->AddHistogram("mailpulse_probe_phase_seconds",
                                       "Phase durations of every check of the target.",
                                       {"target", "phase"}, PhaseBuckets(), kPerTargetSeries)),
      checks_(r->AddCounter("mailpulse_probe_checks_total",
                            "Checks of the target by result: success or the failure kind.",
                            {"target", "result"}, kPerTargetSeries)),
      reply_code_(r->AddGauge("mailpulse_probe_last_reply_code",
                              "The server's last reply code in each phase of the last check.",
                              {"target", "phase"}, kPerTargetSeries)),
      state_(r->AddGauge("mailpulse_probe_state",
                         "Nagios state of the last check against the target's thresholds: 0 OK, "
                         "1 WARNING, 2 CRITICAL.",
                         {"target"})),
      last_check_(r->AddGauge("mailpulse_probe_last_check_timestamp_seconds",
                              "Unix time the last check of the target ended.", {"target"})),
      cert_not_after_(r->AddGauge("mailpulse_tls_cert_not_after_timestamp_seconds",
                                  "Unix time the target's certificate expires (last seen).",
                                  {"target"})),
      tls_version_(r->AddGauge("mailpulse_tls_version_info",
                               "TLS version of the target's last TLS session (always 1).",
                               {"target", "version"})),
      tls_resumed_(r->AddGauge("mailpulse_probe_tls_resumed",
                               "1 if the target's last TLS handshake resumed an earlier session "
                               "(tls_resume), 0 if it was a full one.",
                               {"target"})),
      reloads_(r->AddCounter("mailpulse_probe_config_reloads_total",
                             "Configuration reloads (SIGHUP) by result.", {"result"})),
      events_(r->AddCounter("mailpulse_probe_events_received_total",
                            "Events received on the event socket, by kind.", {"kind"})) {
  r->AddGauge("mailpulse_probe_up", "1 while the probe daemon runs.").WithLabels({}).Set(1);
  r->AddGauge("mailpulse_probe_build_info", "Version and name of this probe (always 1).",
              {"version", "probe"})
      .WithLabels({MAILPULSE_VERSION, probe_name})
      .Set(1);
  const double start =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  r->AddGauge("mailpulse_probe_start_time_seconds", "Unix time the probe daemon started.")
      .WithLabels({})
      .Set(start);
  targets_ = &r->AddGauge("mailpulse_probe_targets", "Configured targets.").WithLabels({});
  running_ = &r->AddGauge("mailpulse_probe_checks_running", "Checks in flight.").WithLabels({});
  schedule_lag_ = &r->AddHistogram("mailpulse_probe_schedule_lag_seconds",
                                   "How late checks started past their due time (waiting for "
                                   "probe.max_concurrent_checks).",
                                   {}, PhaseBuckets())
                       .WithLabels({});
  reload_ok_ = &r->AddGauge("mailpulse_probe_config_last_reload_successful",
                            "1 if the last reload succeeded (or none happened), else 0.")
                    .WithLabels({});
  reload_ok_->Set(1);
  reload_time_ = &r->AddGauge("mailpulse_probe_config_last_reload_success_timestamp_seconds",
                              "Unix time of the last successful configuration load.")
                      .WithLabels({});
  reload_time_->Set(start);
  event_peers_ = &r->AddGauge("mailpulse_probe_event_peers",
                              "Milters and probes connected to the event socket.")
                      .WithLabels({});
  event_peers_dropped_ = &r->AddCounter("mailpulse_probe_event_peers_dropped_total",
                                        "Event socket peers dropped for sending garbage or "
                                        "oversize frames.")
                              .WithLabels({});
  report_dropped_ = &r->AddCounter("mailpulse_probe_report_events_dropped_total",
                                   "Probe results not delivered to probe.report_to (queue full "
                                   "while it was unreachable).")
                         .WithLabels({});
  report_sent_ = &r->AddCounter("mailpulse_probe_report_events_sent_total",
                                "Probe results handed to probe.report_to.")
                      .WithLabels({});
}

void ProbeMetrics::RecordCheck(const std::string& target, const CheckResult& result,
                               const CheckVerdict& verdict, bool implicit_tls, double now_unix) {
  const CheckOutcome& o = result.outcome;
  success_.WithLabels({target}).Set(o.success ? 1 : 0);
  Gauge& in_a_row = failures_in_a_row_.WithLabels({target});
  in_a_row.Set(o.success ? 0 : in_a_row.Value() + 1);
  duration_.WithLabels({target}).Set(result.total_seconds);
  state_.WithLabels({target}).Set(static_cast<double>(verdict.state));
  last_check_.WithLabels({target}).Set(now_unix);
  checks_.WithLabels({target, o.success ? "success" : std::string(FailureKindName(o.failure))})
      .Inc();
  for (Phase p : PhaseOrder(implicit_tls)) {
    const auto i = static_cast<std::size_t>(p);
    const std::string phase(PhaseName(p));
    if (result.phase_seconds[i] >= 0) {
      phase_duration_.WithLabels({target, phase}).Set(result.phase_seconds[i]);
      phase_histogram_.WithLabels({target, phase}).Observe(result.phase_seconds[i]);
    } else {
      phase_duration_.Remove({target, phase});  // not reached this time
    }
    if (o.reply_codes[i] != 0) {
      reply_code_.WithLabels({target, phase}).Set(o.reply_codes[i]);
    } else {
      reply_code_.Remove({target, phase});
    }
  }
  if (result.tls.established) {
    if (result.tls.not_after_unix != 0) {
      cert_not_after_.WithLabels({target}).Set(static_cast<double>(result.tls.not_after_unix));
    }
    tls_version_.Remove({target});
    tls_version_.WithLabels({target, result.tls.version}).Set(1);
    tls_resumed_.WithLabels({target}).Set(result.tls.resumed ? 1 : 0);
  }
}

void ProbeMetrics::ForgetTarget(const std::string& target) {
  for (GaugeFamily* f : {&success_, &failures_in_a_row_, &duration_, &phase_duration_, &reply_code_,
                         &state_, &last_check_, &cert_not_after_, &tls_version_, &tls_resumed_}) {
    f->Remove({target});
  }
  phase_histogram_.Remove({target});
  checks_.Remove({target});
}

void ProbeMetrics::RecordReload(bool ok, double now_unix) {
  reloads_.WithLabels({ok ? "success" : "failure"}).Inc();
  reload_ok_->Set(ok ? 1 : 0);
  if (ok) reload_time_->Set(now_unix);
}

void ProbeMetrics::SetEventPeers(std::size_t connected) {
  event_peers_->Set(static_cast<double>(connected));
}

}  // namespace mailpulse
