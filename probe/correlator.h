// Correlator: the journeys of probe messages. The probe says what it sent (Sent); milters
// report where each message was seen (HopSighting: each hop's end-of-message time, queue id,
// client, TLS) and how it ended (a sighting at a sink: delivered; a DSN: bounced); whatever has
// not ended by its deadline is lost. Pure logic: time comes in as an argument (unix µs), no
// clock, no socket, no logging; the daemon turns the journeys it returns into metrics and log
// lines. Not thread-safe: the daemon's event loop owns it.
//
// The rules (docs/roundtrip.md):
// - Matching is by probe id only, so an earlier probe arriving late never satisfies a newer
//   one; sightings whose token names another probe (probe_source) are not ours and ignored.
// - Reports may come in any order: a hop's sighting can reach the probe before the probe has
//   seen the final 250 of its own DATA (Sent), and the last hop's before the first hop's.
//   Reports of an unknown id are held for `orphan_seconds` in case Sent follows (at most
//   `max_orphans`, the oldest dropped first); those whose Sent never comes are dropped and
//   counted as orphans, never finished as lost journeys.
// - A journey ends when it is delivered or bounced, but is finished (returned by Expire, with
//   its timeline) only `settle_seconds` after the ending report arrived, so stragglers from
//   earlier hops still join it. The first end wins: a delivery after a bounce, or a bounce or
//   second delivery after a delivery, counts as late; the same bounce seen again is a duplicate.
// - A journey not ended `lost_after_seconds` after it was sent is finished as lost (a report
//   arriving exactly then is too late). Reports for a finished journey are counted as late
//   (and returned as such), never change it.
// - Duplicate sightings (same hop and queue id) are ignored; the same hop with another queue
//   id is another visit (a loop, or a retry by another path) and kept, up to 100 visits. Hops
//   are ordered by their own time (eom_unix_us, that hop's clock), not by arrival.
// - Memory is bounded: at most `max_pending` journeys (beyond that the one due soonest is
//   finished at once and flagged `evicted`: a pending one as lost, an ended one as it ended)
//   and `history` finished ones kept for `mailpulse-probe trace`; a report for a journey that
//   has left the history is treated as an unknown id.
// - Every call first finishes what is due at its time, so what a report counts as never
//   depends on when the daemon last called Expire.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "shared/proto/event.pb.h"

namespace mailpulse {

enum class JourneyOutcome { kPending, kDelivered, kBounced, kLost };
std::string_view JourneyOutcomeName(JourneyOutcome o);  // "pending", "delivered", ...

struct HopVisit {
  std::string hop;
  std::int64_t time_unix_us = 0;  // the hop's end of message
  std::string queue_id;
  std::string client_address;
  bool tls = false;
};

struct Journey {
  std::string probe_id;
  std::string target;
  std::int64_t sent_unix_us = 0;  // when the probe's DATA was accepted (0: Sent not yet seen)
  std::string queue_id;           // the first hop's queue id from the probe's final 250
  std::vector<HopVisit> hops;     // ordered by time
  JourneyOutcome outcome = JourneyOutcome::kPending;
  std::int64_t ended_unix_us = 0;     // delivered: the sink hop's time; bounced: the DSN's
  std::string delivered_hop;          // the hop that reported the delivery
  proto::ProbeBounce bounce;          // when bounced
  std::uint32_t late_reports = 0;     // reports after it was finished, and second ends
  std::int64_t finished_unix_us = 0;  // when it was finished: settle time, deadline or eviction
  bool evicted = false;               // finished early by the max_pending bound
};

// The round trip of a delivered journey (ended - sent), in seconds; nullopt otherwise.
std::optional<double> RoundTripSeconds(const Journey& j);
// Per hop visit in time order, the latency from the previous one (the first from `sent`), in
// seconds; empty when Sent is unknown. Hop times are each hop's own clock, so a negative value
// means unsynchronised clocks, and is returned as it is.
std::vector<std::pair<std::string, double>> HopLatencies(const Journey& j);

class Correlator {
 public:
  struct Options {
    std::string probe_name;  // our probe_source; others' sightings are ignored
    double lost_after_seconds = 600;
    double settle_seconds = 2;
    double orphan_seconds = 60;
    std::size_t max_pending = 10000;
    std::size_t history = 1000;
    std::size_t max_orphans = 1000;
  };

  enum class ReportKind {
    kHop,        // a hop recorded on a pending journey
    kEnded,      // the journey was delivered or bounced by this report (finishes after settle)
    kStraggler,  // a hop joined an ended journey within its settle time
    kDuplicate,  // already known (or a visit beyond the 100 kept); ignored
    kOrphan,     // unknown id, held in case Sent follows
    kLate,       // for a finished journey, or a second end: counted on it, nothing changed
    kForeign,    // another probe's message
  };

  explicit Correlator(Options options);

  // The probe's message `id` for `target` was accepted at `sent_unix_us` with `queue_id`.
  // Held orphan reports for `id` join it now, each as of when it arrived. `sent_unix_us` is
  // also this call's time. A second Sent for a known id is ignored.
  void Sent(std::string_view id, std::string_view target, std::int64_t sent_unix_us,
            std::string_view queue_id);
  ReportKind OnSighting(const proto::HopSighting& sighting, std::int64_t now_unix_us);
  ReportKind OnBounce(const proto::ProbeBounce& bounce, std::int64_t now_unix_us);

  // Journeys finished by now and not returned yet: settled deliveries and bounces, the lost
  // and the evicted ones, in the order they finished (finished_unix_us), oldest first; each as
  // it was when finished (late reports after that are counted on the history's copy). Drops
  // the orphans whose time is up.
  std::vector<Journey> Expire(std::int64_t now_unix_us);
  // When Expire will next have something to do (a settle time, a deadline, an orphan's expiry;
  // at or before the last call's time when finished journeys are waiting), nullopt when idle.
  std::optional<std::int64_t> NextDeadline() const;

  // A pending or finished journey by id (valid until the next non-const call), and the
  // finished ones, newest first.
  const Journey* Find(std::string_view probe_id) const;
  const std::deque<Journey>& history() const { return history_; }
  std::size_t pending() const { return pending_.size(); }  // journeys not finished yet
  // The journeys not finished yet, by probe id (valid until the next non-const call).
  std::vector<const Journey*> PendingJourneys() const;
  std::size_t orphans() const { return orphans_.size(); }  // reports held for an unknown id
  std::uint64_t late_reports() const { return late_reports_; }
  // Orphan reports dropped, at their expiry or by the max_orphans bound.
  std::uint64_t orphans_dropped() const { return orphans_dropped_; }

 private:
  struct Pending {
    Journey journey;
    std::int64_t deadline_us = 0;  // lost at, or settled at once ended
  };
  using Report = std::variant<proto::HopSighting, proto::ProbeBounce>;
  struct Orphan {
    Report report;
    std::int64_t received_us = 0;
  };
  using PendingMap = std::map<std::string, Pending, std::less<>>;

  void FinishDue(std::int64_t now_us);
  void Finish(PendingMap::iterator it, std::int64_t at_us, bool evicted);
  void SetDeadline(PendingMap::iterator it, std::int64_t deadline_us);
  void JoinOrphans(PendingMap::iterator it);
  ReportKind ApplySighting(PendingMap::iterator it, const proto::HopSighting& s,
                           std::int64_t now_us);
  ReportKind ApplyBounce(PendingMap::iterator it, const proto::ProbeBounce& b, std::int64_t now_us);
  ReportKind Unmatched(Report report, std::int64_t now_us);
  ReportKind CountLate(Journey& j);
  Journey* FindFinished(std::string_view probe_id);

  Options options_;
  std::int64_t lost_after_us_;
  std::int64_t settle_us_;
  std::int64_t orphan_us_;
  PendingMap pending_;
  std::set<std::pair<std::int64_t, std::string>> deadlines_;  // (deadline_us, id) of pending_
  std::multimap<std::int64_t, Orphan> orphans_;  // by expiry; equal expiries in arrival order
  std::deque<Journey> history_;
  std::vector<Journey> finished_;  // finished, not yet returned by Expire; in finishing order
  std::uint64_t late_reports_ = 0;
  std::uint64_t orphans_dropped_ = 0;
};

}  // namespace mailpulse
