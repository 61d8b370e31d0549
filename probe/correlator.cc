#include "probe/correlator.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

namespace mailpulse {
namespace {

// A mail loop visits the same hops again with new queue ids until the MTA gives up (Postfix
// hopcount_limit, 50 Received: headers by default); a journey keeps that many and a margin, so
// a loop cannot grow one journey without bound.
constexpr std::size_t kMaxVisits = 100;

constexpr double kMicrosPerSecond = 1e6;

std::int64_t Micros(double seconds) {
  return static_cast<std::int64_t>(std::llround(std::max(seconds, 0.0) * kMicrosPerSecond));
}

double Seconds(std::int64_t micros) { return static_cast<double>(micros) / kMicrosPerSecond; }

// Both report types carry the id, the reporting hop and its queue id under the same names.
template <typename R>
bool SameReport(const R& a, const R& b) {
  return a.probe_id() == b.probe_id() && a.hop() == b.hop() && a.queue_id() == b.queue_id();
}

const std::string& ReportId(const std::variant<proto::HopSighting, proto::ProbeBounce>& r) {
  return std::visit([](const auto& report) -> const std::string& { return report.probe_id(); }, r);
}

// Inserted after visits with the same time, so equal times keep their arrival order.
void InsertVisit(Journey& j, const proto::HopSighting& s) {
  HopVisit visit{s.hop(), s.eom_unix_us(), s.queue_id(), s.client_address(), s.tls()};
  auto at = std::upper_bound(j.hops.begin(), j.hops.end(), visit.time_unix_us,
                             [](std::int64_t t, const HopVisit& v) { return t < v.time_unix_us; });
  j.hops.insert(at, std::move(visit));
}

}  // namespace

std::string_view JourneyOutcomeName(JourneyOutcome o) {
  switch (o) {
    case JourneyOutcome::kPending:
      return "pending";
    case JourneyOutcome::kDelivered:
      return "delivered";
    case JourneyOutcome::kBounced:
      return "bounced";
    case JourneyOutcome::kLost:
      return "lost";
  }
  return "unknown";
}

std::optional<double> RoundTripSeconds(const Journey& j) {
  if (j.outcome != JourneyOutcome::kDelivered || j.sent_unix_us == 0) return std::nullopt;
  return Seconds(j.ended_unix_us - j.sent_unix_us);
}

std::vector<std::pair<std::string, double>> HopLatencies(const Journey& j) {
  std::vector<std::pair<std::string, double>> out;
  if (j.sent_unix_us == 0) return out;
  std::int64_t previous = j.sent_unix_us;
  for (const HopVisit& v : j.hops) {
    out.emplace_back(v.hop, Seconds(v.time_unix_us - previous));
    previous = v.time_unix_us;
  }
  return out;
}

Correlator::Correlator(Options options)
    : options_(std::move(options)),
      lost_after_us_(Micros(options_.lost_after_seconds)),
      settle_us_(Micros(options_.settle_seconds)),
      orphan_us_(Micros(options_.orphan_seconds)) {
  options_.max_pending = std::max<std::size_t>(options_.max_pending, 1);
}

void Correlator::Sent(std::string_view id, std::string_view target, std::int64_t sent_unix_us,
                      std::string_view queue_id) {
  FinishDue(sent_unix_us);
  if (pending_.contains(id) || FindFinished(id) != nullptr) return;
  auto it = pending_.emplace(std::string(id), Pending{}).first;
  Journey& j = it->second.journey;
  j.probe_id = id;
  j.target = target;
  j.sent_unix_us = sent_unix_us;
  j.queue_id = queue_id;
  SetDeadline(it, sent_unix_us + lost_after_us_);
  JoinOrphans(it);
  // The journey due soonest goes: among those not ended that is the oldest, and an ended one
  // only loses its remaining settle time.
  while (pending_.size() > options_.max_pending) {
    Finish(pending_.find(deadlines_.begin()->second), sent_unix_us, /*evicted=*/true);
  }
}

Correlator::ReportKind Correlator::OnSighting(const proto::HopSighting& sighting,
                                              std::int64_t now_unix_us) {
  if (sighting.probe_source() != options_.probe_name) return ReportKind::kForeign;
  FinishDue(now_unix_us);
  auto it = pending_.find(sighting.probe_id());
  if (it != pending_.end()) return ApplySighting(it, sighting, now_unix_us);
  return Unmatched(sighting, now_unix_us);
}

Correlator::ReportKind Correlator::OnBounce(const proto::ProbeBounce& bounce,
                                            std::int64_t now_unix_us) {
  if (bounce.probe_source() != options_.probe_name) return ReportKind::kForeign;
  FinishDue(now_unix_us);
  auto it = pending_.find(bounce.probe_id());
  if (it != pending_.end()) return ApplyBounce(it, bounce, now_unix_us);
  return Unmatched(bounce, now_unix_us);
}

std::vector<Journey> Correlator::Expire(std::int64_t now_unix_us) {
  FinishDue(now_unix_us);
  return std::exchange(finished_, {});
}

std::optional<std::int64_t> Correlator::NextDeadline() const {
  std::optional<std::int64_t> next;
  auto consider = [&next](std::int64_t t) {
    if (!next || t < *next) next = t;
  };
  for (const Journey& j : finished_) consider(j.finished_unix_us);
  if (!deadlines_.empty()) consider(deadlines_.begin()->first);
  if (!orphans_.empty()) consider(orphans_.begin()->first);
  return next;
}

const Journey* Correlator::Find(std::string_view probe_id) const {
  auto it = pending_.find(probe_id);
  if (it != pending_.end()) return &it->second.journey;
  auto h = std::find_if(history_.begin(), history_.end(),
                        [probe_id](const Journey& j) { return j.probe_id == probe_id; });
  return h == history_.end() ? nullptr : &*h;
}

Journey* Correlator::FindFinished(std::string_view probe_id) {
  // Linear: the history is bounded, and only reports of ids not pending come here.
  auto h = std::find_if(history_.begin(), history_.end(),
                        [probe_id](const Journey& j) { return j.probe_id == probe_id; });
  return h == history_.end() ? nullptr : &*h;
}

void Correlator::FinishDue(std::int64_t now_us) {
  while (!deadlines_.empty() && deadlines_.begin()->first <= now_us) {
    const auto [at, id] = *deadlines_.begin();
    Finish(pending_.find(id), at, /*evicted=*/false);
  }
  while (!orphans_.empty() && orphans_.begin()->first <= now_us) {
    orphans_.erase(orphans_.begin());
    ++orphans_dropped_;
  }
}

void Correlator::Finish(PendingMap::iterator it, std::int64_t at_us, bool evicted) {
  Journey j = std::move(it->second.journey);
  deadlines_.erase({it->second.deadline_us, it->first});
  pending_.erase(it);
  if (j.outcome == JourneyOutcome::kPending) j.outcome = JourneyOutcome::kLost;
  j.finished_unix_us = at_us;
  j.evicted = evicted;
  finished_.push_back(j);
  if (options_.history == 0) return;
  history_.push_front(std::move(j));
  if (history_.size() > options_.history) history_.pop_back();
}

void Correlator::SetDeadline(PendingMap::iterator it, std::int64_t deadline_us) {
  deadlines_.erase({it->second.deadline_us, it->first});
  it->second.deadline_us = deadline_us;
  deadlines_.emplace(deadline_us, it->first);
}

void Correlator::JoinOrphans(PendingMap::iterator it) {
  // Linear over the held orphans: Sent comes once per check, and orphans are few and bounded.
  std::vector<Orphan> mine;
  for (auto o = orphans_.begin(); o != orphans_.end();) {
    if (ReportId(o->second.report) != it->first) {
      ++o;
      continue;
    }
    mine.push_back(std::move(o->second));
    o = orphans_.erase(o);
  }
  // In arrival order (the map's order: every orphan is held equally long), each as of then.
  for (const Orphan& o : mine) {
    if (const auto* s = std::get_if<proto::HopSighting>(&o.report)) {
      ApplySighting(it, *s, o.received_us);
    } else {
      ApplyBounce(it, std::get<proto::ProbeBounce>(o.report), o.received_us);
    }
  }
}

Correlator::ReportKind Correlator::ApplySighting(PendingMap::iterator it,
                                                 const proto::HopSighting& s, std::int64_t now_us) {
  Journey& j = it->second.journey;
  const bool known = std::any_of(j.hops.begin(), j.hops.end(), [&s](const HopVisit& v) {
    return v.hop == s.hop() && v.queue_id == s.queue_id();
  });
  if (known || j.hops.size() >= kMaxVisits) return ReportKind::kDuplicate;
  const bool ended = j.outcome != JourneyOutcome::kPending;
  if (ended && s.delivered()) return CountLate(j);  // the first end wins
  InsertVisit(j, s);
  if (ended) return ReportKind::kStraggler;
  if (!s.delivered()) return ReportKind::kHop;
  j.outcome = JourneyOutcome::kDelivered;
  j.ended_unix_us = s.eom_unix_us();
  j.delivered_hop = s.hop();
  SetDeadline(it, now_us + settle_us_);
  return ReportKind::kEnded;
}

Correlator::ReportKind Correlator::ApplyBounce(PendingMap::iterator it, const proto::ProbeBounce& b,
                                               std::int64_t now_us) {
  Journey& j = it->second.journey;
  // Every hop on the DSN's way back to the probe's return path may report it.
  if (j.outcome == JourneyOutcome::kBounced) return ReportKind::kDuplicate;
  if (j.outcome != JourneyOutcome::kPending) return CountLate(j);  // the first end wins
  j.outcome = JourneyOutcome::kBounced;
  j.bounce = b;
  j.ended_unix_us = b.time_unix_us();
  SetDeadline(it, now_us + settle_us_);
  return ReportKind::kEnded;
}

Correlator::ReportKind Correlator::Unmatched(Report report, std::int64_t now_us) {
  if (Journey* j = FindFinished(ReportId(report))) return CountLate(*j);
  const bool held = std::any_of(orphans_.begin(), orphans_.end(), [&report](const auto& o) {
    return std::visit(
        [](const auto& a, const auto& b) {
          if constexpr (std::is_same_v<decltype(a), decltype(b)>) return SameReport(a, b);
          return false;
        },
        o.second.report, report);
  });
  if (held) return ReportKind::kDuplicate;
  orphans_.emplace(now_us + orphan_us_, Orphan{std::move(report), now_us});
  if (orphans_.size() > options_.max_orphans) {
    orphans_.erase(orphans_.begin());  // the oldest
    ++orphans_dropped_;
  }
  return ReportKind::kOrphan;
}

Correlator::ReportKind Correlator::CountLate(Journey& j) {
  ++j.late_reports;
  ++late_reports_;
  return ReportKind::kLate;
}

std::vector<const Journey*> Correlator::PendingJourneys() const {
  std::vector<const Journey*> out;
  out.reserve(pending_.size());
  for (const auto& [id, p] : pending_) out.push_back(&p.journey);
  return out;
}

}  // namespace mailpulse
