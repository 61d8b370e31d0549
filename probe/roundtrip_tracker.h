// RoundTripTracker: the daemon's side of the round trip (docs/roundtrip.md). It tells the
// Correlator which probe messages were sent, feeds it the milters' hop sightings and bounces
// from the event socket, finishes journeys on time (one timer at the correlator's next
// deadline), turns finished journeys into metrics and one log line each, polls IMAP mailboxes
// for targets whose last hop has no milter, and answers `GET /journeys` for
// `mailpulse-probe trace`. Glue; not thread-safe: everything runs on the daemon's loop.
#pragma once

#include <event2/event.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "probe/correlator.h"
#include "probe/imap_confirmer.h"
#include "probe/journey_report.h"
#include "probe/probe_config.h"
#include "shared/libevent_ptr.h"
#include "shared/metrics.h"

namespace mailpulse {

class Resolver;

class RoundTripTracker {
 public:
  // `base`, `resolver` and `registry` must outlive the tracker.
  RoundTripTracker(event_base* base, Resolver* resolver, MetricsRegistry* registry,
                   Correlator::Options options);
  ~RoundTripTracker();
  RoundTripTracker(const RoundTripTracker&) = delete;
  RoundTripTracker& operator=(const RoundTripTracker&) = delete;

  // A roundtrip target's probe message was accepted by its first hop at `sent_unix_us`.
  // `imap_tls` is the context for the target's IMAP confirmation, if it has one.
  void Sent(const ProbeTarget& target, const std::string& probe_id, std::int64_t sent_unix_us,
            const std::string& queue_id, std::shared_ptr<SSL_CTX> imap_tls);
  // A hop sighting or probe bounce from the event socket; false for other events.
  bool OnEvent(const proto::Event& event);
  // Called with every journey as it finishes (after its metrics and log line).
  void SetJourneyListener(std::function<void(const Journey&)> listener) {
    listener_ = std::move(listener);
  }
  // A target removed by a reload: its series go, its pending journeys finish in due course.
  void ForgetTarget(const std::string& target);

  // The body of GET /journeys (every journey kept, newest first, then the pending ones) or
  // GET /journeys/ID; nullopt for an unknown id or path.
  std::optional<std::string> JourneysJson(std::string_view path) const;

 private:
  struct ImapWatch;

  static void OnJourneyTimer(evutil_socket_t, short, void* arg) noexcept;
  static void OnImapTimer(evutil_socket_t, short, void* arg) noexcept;
  void FinishDue();
  void ArmJourneyTimer();
  void StartImapWatch(const ProbeTarget& target, const std::string& probe_id,
                      std::shared_ptr<SSL_CTX> tls);
  void PollImap(ImapWatch* watch);
  void OnImapDone(const std::string& probe_id, ImapResult result);
  void CountLate(const std::string& probe_id);

  event_base* base_;
  Resolver* resolver_;
  std::string probe_name_;
  Correlator correlator_;
  RoundTripMetrics metrics_;
  EventPtr journey_timer_;
  std::map<std::string, std::unique_ptr<ImapWatch>> imap_watches_;  // by probe id
  std::function<void(const Journey&)> listener_;
};

}  // namespace mailpulse
