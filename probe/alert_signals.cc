#include "probe/alert_signals.h"

#include <cstdio>

namespace mailpulse {
namespace {

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", s);
  return buf;
}

bool Matches(const AlertRuleSpec& r, const std::string& subject) {
  return GlobMatch(r.condition.match, subject);
}

// The phase's time in this check, or the total; negative when the check did not reach it.
double PhaseSeconds(const CheckResult& result, const std::string& phase) {
  if (phase == "total") return result.total_seconds;
  for (int i = 0; i < kPhaseCount; ++i) {
    if (PhaseName(static_cast<Phase>(i)) == phase) {
      return result.phase_seconds[static_cast<std::size_t>(i)];
    }
  }
  return -1;
}

std::string SourceOf(const proto::Event& e) {
  switch (e.kind_case()) {
    case proto::Event::kTrafficSnapshot:
      return e.traffic_snapshot().source();
    case proto::Event::kHopSighting:
      return e.hop_sighting().hop();
    case proto::Event::kProbeBounce:
      return e.probe_bounce().hop();
    case proto::Event::kOutboundSpike:
      return e.outbound_spike().source();
    case proto::Event::kQueueStatus:
      return e.queue_status().source();
    default:
      return "";
  }
}

}  // namespace

std::vector<Observation> AlertSignals::OnCheck(const std::string& target, const CheckResult& result,
                                               const CheckVerdict& verdict, std::int64_t now_unix) {
  int& in_a_row = failures_in_a_row_[target];
  in_a_row = result.outcome.success ? 0 : in_a_row + 1;
  std::vector<Observation> out;
  for (const AlertRuleSpec& r : rules_) {
    if (!Matches(r, target)) continue;
    const AlertCondition& c = r.condition;
    Observation o{r.rule.name, target, false, "", {}};
    switch (c.signal) {
      case AlertSignal::kCheckFailing: {
        // Good only on a success: a failure short of `checks` in a row proves nothing either
        // way (after a restart the count starts over below an alert that is still firing).
        if (!result.outcome.success && in_a_row < c.checks) continue;
        o.bad = !result.outcome.success;
        if (!o.bad) o.summary = target + ": checks pass again";
        if (o.bad) {
          const std::string reason = FailureReason(result.outcome);
          o.summary =
              target + ": " + reason + " (" + std::to_string(in_a_row) + " failed checks in a row)";
          o.details = {{"phase", std::string(PhaseName(result.outcome.phase))},
                       {"reply", reason},
                       {"failures_in_a_row", std::to_string(in_a_row)},
                       {"address", result.address},
                       {"status", verdict.summary}};
        }
        break;
      }
      case AlertSignal::kLatency: {
        const double s = PhaseSeconds(result, c.phase);
        if (s < 0 || (!result.outcome.success && c.phase == "total")) continue;  // not measured
        o.bad = s > c.over_seconds;
        o.summary = target + ": " + c.phase + " took " + Seconds(s) + " (threshold " +
                    Seconds(c.over_seconds) + ")";
        o.details = {{"phase", c.phase},
                     {"seconds", Seconds(s)},
                     {"threshold", Seconds(c.over_seconds)},
                     {"address", result.address}};
        break;
      }
      case AlertSignal::kCertificateExpiry: {
        if (result.tls.not_after_unix == 0) continue;  // no certificate seen this time
        const std::int64_t days = CertificateDaysLeft(result.tls.not_after_unix, now_unix);
        o.bad = days < c.days;
        o.summary = target + ": certificate expires in " + std::to_string(days) + " days";
        o.details = {{"days_left", std::to_string(days)},
                     {"not_after_unix", std::to_string(result.tls.not_after_unix)},
                     {"address", result.address}};
        break;
      }
      default:
        continue;
    }
    out.push_back(std::move(o));
  }
  return out;
}

std::vector<Observation> AlertSignals::OnJourney(const Journey& j) {
  std::vector<Observation> out;
  const std::string last_hop = j.hops.empty() ? "(no hop)" : j.hops.back().hop;
  for (const AlertRuleSpec& r : rules_) {
    const AlertCondition& c = r.condition;
    if (c.signal == AlertSignal::kRoundtripLost || c.signal == AlertSignal::kRoundtripBounced) {
      if (!Matches(r, j.target)) continue;
      Observation o{r.rule.name, j.target, false, "", {{"probe_id", j.probe_id}}};
      if (c.signal == AlertSignal::kRoundtripLost) {
        o.bad = j.outcome == JourneyOutcome::kLost;
        o.summary =
            o.bad ? j.target + ": probe message " + j.probe_id + " lost; last seen at " + last_hop
                  : j.target + ": probe message " + j.probe_id + " " +
                        std::string(JourneyOutcomeName(j.outcome));
        o.details.emplace_back("last_hop", last_hop);
      } else {
        o.bad = j.outcome == JourneyOutcome::kBounced;
        std::string status, diagnostic;
        if (!j.bounce.recipients().empty()) {
          status = j.bounce.recipients(0).status();
          diagnostic = j.bounce.recipients(0).diagnostic_code();
        }
        o.summary = o.bad ? j.target + ": probe message " + j.probe_id + " bounced at " +
                                j.bounce.hop() + (status.empty() ? "" : " (" + status + ")")
                          : j.target + ": probe message " + j.probe_id + " " +
                                std::string(JourneyOutcomeName(j.outcome));
        o.details.emplace_back("status", status);
        o.details.emplace_back("diagnostic", diagnostic);
        o.details.emplace_back("reporting_mta", j.bounce.reporting_mta());
      }
      out.push_back(std::move(o));
    } else if (c.signal == AlertSignal::kHopLatency && j.outcome == JourneyOutcome::kDelivered) {
      for (const auto& [hop, seconds] : HopLatencies(j)) {
        if (!Matches(r, hop)) continue;
        out.push_back({r.rule.name,
                       hop,
                       seconds > c.over_seconds,
                       hop + ": reached " + Seconds(seconds) + " after the previous hop (target " +
                           j.target + ", threshold " + Seconds(c.over_seconds) + ")",
                       {{"target", j.target},
                        {"seconds", Seconds(seconds)},
                        {"threshold", Seconds(c.over_seconds)},
                        {"probe_id", j.probe_id}}});
      }
    }
  }
  return out;
}

std::vector<Observation> AlertSignals::OnEvent(const proto::Event& event, double now_unix) {
  std::vector<Observation> out;
  const std::string source = SourceOf(event);
  if (source.empty()) return out;
  last_heard_[source] = now_unix;
  for (const AlertRuleSpec& r : rules_) {
    if (!Matches(r, source)) continue;
    const AlertCondition& c = r.condition;
    if ((c.signal == AlertSignal::kQueueMessages || c.signal == AlertSignal::kQueueAge) &&
        event.has_queue_status() && event.queue_status().ok()) {
      for (const proto::QueueCount& q : event.queue_status().queues()) {
        if (q.queue() != c.queue) continue;
        const bool by_count = c.signal == AlertSignal::kQueueMessages;
        Observation o{r.rule.name, source + "/" + q.queue(), false, "", {}};
        o.bad = by_count ? q.messages() > c.messages : q.oldest_age_seconds() > c.over_seconds;
        o.summary = source + ": " + std::to_string(q.messages()) + " messages in " + q.queue() +
                    ", the oldest " +
                    std::to_string(static_cast<std::int64_t>(q.oldest_age_seconds())) + "s old";
        o.details = {
            {"queue", q.queue()},
            {"messages", std::to_string(q.messages())},
            {"oldest_age_seconds",
             std::to_string(static_cast<std::int64_t>(q.oldest_age_seconds()))},
            {"threshold", by_count ? std::to_string(c.messages) : Seconds(c.over_seconds)}};
        out.push_back(std::move(o));
      }
    } else if (c.signal == AlertSignal::kOutboundSpike && event.has_outbound_spike()) {
      const proto::OutboundSpike& s = event.outbound_spike();
      const std::string key = s.key().empty() ? s.key_kind() : s.key_kind() + " " + s.key();
      std::string domains;
      for (const std::string& d : s.recipient_domains())
        domains += (domains.empty() ? "" : ", ") + d;
      char rate[160];
      std::snprintf(rate, sizeof rate, "%.0f messages/min (baseline %.1f)", s.messages_per_minute(),
                    s.baseline_messages_per_minute());
      out.push_back({r.rule.name,
                     source + "/" + key,
                     s.started(),
                     source + ": outbound spike from " + key +
                         (s.started() ? ": " + std::string(rate) : " ended"),
                     {{"key_kind", s.key_kind()},
                      {"key", s.key()},
                      {"rate", rate},
                      {"recipient_domains", domains}}});
    }
  }
  return out;
}

std::vector<Observation> AlertSignals::OnTick(double now_unix) {
  std::vector<Observation> out;
  for (const AlertRuleSpec& r : rules_) {
    if (r.condition.signal != AlertSignal::kMilterSilent) continue;
    for (const auto& [source, last] : last_heard_) {
      if (!Matches(r, source)) continue;
      const double quiet = now_unix - last;
      out.push_back({r.rule.name,
                     source,
                     quiet > r.condition.over_seconds,
                     source + ": no event from this milter for " +
                         std::to_string(static_cast<std::int64_t>(quiet)) + "s",
                     {{"silent_seconds", std::to_string(static_cast<std::int64_t>(quiet))}}});
    }
  }
  return out;
}

}  // namespace mailpulse
