#include "probe/journey_report.h"

#include <cstdio>
#include <ctime>

namespace mailpulse {
namespace {

// Round trips span milliseconds (one host) to the minutes of a greylisted or queued hop.
std::vector<double> JourneyBuckets() {
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f s", s);
  return buf;
}

// "20:01:02.345678" in UTC.
std::string TimeOfDay(std::int64_t unix_us) {
  const auto t = static_cast<std::time_t>(unix_us / 1000000);
  std::tm tm{};
  char buf[48] = "?";
  if (gmtime_r(&t, &tm) != nullptr) {
    std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%06lld", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long long>(unix_us % 1000000));
  }
  return buf;
}

std::string BounceText(const proto::ProbeBounce& b) {
  std::string out;
  for (const proto::BounceRecipient& r : b.recipients()) {
    out += (out.empty() ? "" : "; ") + r.final_recipient() + " " + r.action() + " " + r.status() +
           (r.diagnostic_code().empty() ? "" : " (" + r.diagnostic_code() + ")");
  }
  if (!b.reporting_mta().empty()) out += " reported by " + b.reporting_mta();
  return out;
}

}  // namespace

RoundTripMetrics::RoundTripMetrics(MetricsRegistry* r)
    : roundtrip_(r->AddHistogram("mailpulse_roundtrip_seconds",
                                 "Time from a probe message leaving the probe to its delivery at "
                                 "the sink (the sink hop's clock), per target.",
                                 {"target"}, JourneyBuckets())),
      hop_latency_(r->AddHistogram("mailpulse_hop_latency_seconds",
                                   "Time from the previous hop (or the probe's send) to this "
                                   "hop's end of message, per target and hop.",
                                   {"target", "hop"}, JourneyBuckets())),
      outcomes_(r->AddCounter("mailpulse_roundtrip_total",
                              "Finished journeys of probe messages by outcome: delivered, "
                              "bounced or lost.",
                              {"target", "outcome"})),
      last_(r->AddGauge("mailpulse_roundtrip_last_seconds",
                        "Round trip of the target's last delivered probe message.", {"target"})),
      late_(r->AddCounter("mailpulse_roundtrip_late_reports_total",
                          "Reports about journeys already finished (after the deadline or a "
                          "second end); they change nothing.",
                          {"target"})),
      pending_(
          &r->AddGauge("mailpulse_roundtrip_pending", "Probe messages sent and not yet finished.")
               .WithLabels({})),
      orphans_(&r->AddCounter("mailpulse_roundtrip_orphan_reports_total",
                              "Reports for probe messages this probe never sent (or sent before "
                              "it restarted), held 60 s in case the send was still being "
                              "recorded, then dropped.")
                    .WithLabels({})) {}

void RoundTripMetrics::RecordFinished(const Journey& j) {
  outcomes_.WithLabels({j.target, std::string(JourneyOutcomeName(j.outcome))}).Inc();
  if (std::optional<double> rtt = RoundTripSeconds(j)) {
    roundtrip_.WithLabels({j.target}).Observe(*rtt);
    last_.WithLabels({j.target}).Set(*rtt);
  }
  if (j.outcome == JourneyOutcome::kLost) return;  // a lost journey's hops are no latency
  for (const auto& [hop, seconds] : HopLatencies(j)) {
    hop_latency_.WithLabels({j.target, hop}).Observe(seconds);
  }
}

void RoundTripMetrics::ForgetTarget(const std::string& target) {
  roundtrip_.Remove({target});
  hop_latency_.Remove({target});
  outcomes_.Remove({target});
  last_.Remove({target});
  late_.Remove({target});
}

std::string JourneyLogLine(const Journey& j) {
  std::string line = "journey " + j.probe_id + " target " + j.target + ": " +
                     std::string(JourneyOutcomeName(j.outcome));
  if (std::optional<double> rtt = RoundTripSeconds(j)) line += " in " + Seconds(*rtt);
  line += ": sent " + (j.sent_unix_us != 0 ? TimeOfDay(j.sent_unix_us) : std::string("?"));
  if (!j.queue_id.empty()) line += " (qid " + j.queue_id + ")";
  std::int64_t previous = j.sent_unix_us;
  for (const HopVisit& h : j.hops) {
    line += ", " + h.hop + " ";
    if (previous != 0) {
      char delta[32];
      std::snprintf(delta, sizeof delta, "%+.3f s",
                    static_cast<double>(h.time_unix_us - previous) / 1e6);
      line += delta;
    } else {
      line += TimeOfDay(h.time_unix_us);
    }
    line += " (qid " + h.queue_id + (h.tls ? ", tls)" : ")");
    previous = h.time_unix_us;
  }
  if (j.outcome == JourneyOutcome::kDelivered && !j.delivered_hop.empty()) {
    line += " delivered at " + j.delivered_hop;
  } else if (j.outcome == JourneyOutcome::kBounced) {
    line += "; bounced: " + BounceText(j.bounce);
  } else if (j.outcome == JourneyOutcome::kLost) {
    line += j.hops.empty() ? "; never seen by any hop" : "; last seen at " + j.hops.back().hop;
  }
  if (j.evicted) line += " (finished early: too many journeys pending)";
  return line;
}

nlohmann::json JourneyJson(const Journey& j) {
  nlohmann::json hops = nlohmann::json::array();
  std::int64_t previous = j.sent_unix_us;
  for (const HopVisit& h : j.hops) {
    nlohmann::json hop = {{"hop", h.hop},
                          {"time_unix_us", h.time_unix_us},
                          {"queue_id", h.queue_id},
                          {"client_address", h.client_address},
                          {"tls", h.tls}};
    if (previous != 0)
      hop["latency_seconds"] = static_cast<double>(h.time_unix_us - previous) / 1e6;
    previous = h.time_unix_us;
    hops.push_back(std::move(hop));
  }
  nlohmann::json out = {{"probe_id", j.probe_id},
                        {"target", j.target},
                        {"outcome", std::string(JourneyOutcomeName(j.outcome))},
                        {"sent_unix_us", j.sent_unix_us},
                        {"queue_id", j.queue_id},
                        {"hops", hops},
                        {"late_reports", j.late_reports}};
  if (std::optional<double> rtt = RoundTripSeconds(j)) out["roundtrip_seconds"] = *rtt;
  if (!j.delivered_hop.empty()) out["delivered_hop"] = j.delivered_hop;
  if (j.outcome == JourneyOutcome::kBounced) {
    nlohmann::json rcpts = nlohmann::json::array();
    for (const proto::BounceRecipient& r : j.bounce.recipients()) {
      rcpts.push_back({{"final_recipient", r.final_recipient()},
                       {"action", r.action()},
                       {"status", r.status()},
                       {"diagnostic_code", r.diagnostic_code()},
                       {"remote_mta", r.remote_mta()}});
    }
    out["bounce"] = {{"hop", j.bounce.hop()},
                     {"reporting_mta", j.bounce.reporting_mta()},
                     {"recipients", rcpts}};
  }
  return out;
}

}  // namespace mailpulse
