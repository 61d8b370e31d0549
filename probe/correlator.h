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
//   Sightings of an unknown id are held for `orphan_seconds` in case Sent follows.
// - A journey ends when it is delivered or bounced, but is finished (returned by Expire, with
//   its timeline) only `settle_seconds` later, so stragglers from earlier hops still join it.
// - A journey not ended `lost_after_seconds` after it was sent is finished as lost. Reports
//   for a finished journey are counted as late (and returned as such), never change it.
// - Duplicate sightings (same hop and queue id) are ignored; hops are ordered by their time.
// - Memory is bounded: at most `max_pending` journeys (the oldest are finished as lost beyond
//   that) and `history` finished ones kept for `mailpulse-probe trace`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
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
  std::int64_t ended_unix_us = 0;  // delivered: the sink hop's time; bounced: the DSN's
  std::string delivered_hop;       // the hop that reported the delivery
  proto::ProbeBounce bounce;       // when bounced
  std::uint32_t late_reports = 0;  // reports that arrived after it was finished
};

// The round trip of a delivered journey (ended - sent), in seconds; nullopt otherwise.
std::optional<double> RoundTripSeconds(const Journey& j);
// Per hop, the latency from the previous hop (the first from `sent`), in seconds.
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
  };

  enum class ReportKind {
    kHop,        // a hop recorded on a pending journey
    kEnded,      // the journey was delivered or bounced by this report (finishes after settle)
    kStraggler,  // a hop joined an ended journey within its settle time
    kDuplicate,  // already known; ignored
    kOrphan,     // unknown id, held in case Sent follows
    kLate,       // for a finished journey: counted on it, nothing changed
    kForeign,    // another probe's message
  };

  explicit Correlator(Options options);

  // The probe's message `id` for `target` was accepted at `sent_unix_us` with `queue_id`.
  // Held orphan sightings for `id` join it now.
  void Sent(std::string_view id, std::string_view target, std::int64_t sent_unix_us,
            std::string_view queue_id);
  ReportKind OnSighting(const proto::HopSighting& sighting, std::int64_t now_unix_us);
  ReportKind OnBounce(const proto::ProbeBounce& bounce, std::int64_t now_unix_us);

  // Journeys finished by now: settled deliveries and bounces, and the lost ones; oldest first.
  // Each is also kept in the history.
  std::vector<Journey> Expire(std::int64_t now_unix_us);
  // When Expire will next have something to finish (a settle time or a deadline).
  std::optional<std::int64_t> NextDeadline() const;

  // A pending or finished journey by id, and the finished ones, newest first.
  const Journey* Find(std::string_view probe_id) const;
  const std::deque<Journey>& history() const { return history_; }
  std::size_t pending() const { return pending_.size(); }
  std::uint64_t late_reports() const { return late_reports_; }

 private:
  // Implementation-defined; the implementer owns everything below.
  struct Pending {
    Journey journey;
    std::int64_t deadline_us = 0;  // lost at, or settled at once ended
  };
  struct Orphan {
    proto::HopSighting sighting;
    std::int64_t expires_us = 0;
  };

  Options options_;
  std::map<std::string, Pending, std::less<>> pending_;
  std::multimap<std::string, Orphan, std::less<>> orphans_;
  std::deque<Journey> history_;
  std::uint64_t late_reports_ = 0;
};

}  // namespace mailpulse
