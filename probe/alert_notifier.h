// AlertNotifiers delivers the alert engine's notices: an HTTP(S) POST for webhooks and chats
// (certificates verified unless the notifier says verify = false), a command run with the
// notice as JSON on its stdin and MAILPULSE_ALERT_* in its environment, or an e-mail sent with
// the probe's own SMTP client (CheckRunner: STARTTLS or implicit TLS, AUTH). Each delivery is
// independent and asynchronous on the daemon's loop — a receiver that hangs or fails delays
// nothing else — and is retried with doubling waits (HTTP 5xx/429 or no answer, a command's
// failure, an SMTP failure that is not a 5xx) up to the notifier's retries; a delivery that
// gives up is logged and counted, never fatal. URLs and passwords never reach a log line or a
// metric: notifiers are named by name, kind and the URL's scheme and host.
// Glue; not thread-safe: lives on its event loop.
#pragma once

#include <event2/event.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "probe/alerts/alert_config.h"
#include "probe/alerts/alert_engine.h"
#include "shared/metrics.h"
#include "shared/status.h"

namespace mailpulse {

class Resolver;

class AlertNotifiers {
 public:
  // `base`, `resolver` and `registry` must outlive this. `probe_name` goes into every notice.
  AlertNotifiers(event_base* base, Resolver* resolver, MetricsRegistry* registry,
                 std::string probe_name);
  ~AlertNotifiers();  // deliveries in flight are abandoned (a command keeps running)
  AlertNotifiers(const AlertNotifiers&) = delete;
  AlertNotifiers& operator=(const AlertNotifiers&) = delete;

  // The notifiers by name (TLS contexts are built here: errors name the notifier). Deliveries
  // in flight finish with the settings they started with.
  Status Configure(const std::vector<NotifierSpec>& notifiers);

  // One delivery per notifier the notice names.
  void Deliver(const Notice& notice);

  std::size_t in_flight() const { return deliveries_.size(); }

  struct Channel;
  struct Delivery;

 private:
  void Attempt(Delivery* d);
  void StartHttp(Delivery* d);
  void StartCommand(Delivery* d);
  void StartEmail(Delivery* d);
  // The attempt ended: `retry` says whether another may help; `why` is for the log.
  void AttemptDone(std::uint64_t id, bool ok, bool retry, const std::string& why);
  static void OnTimer(evutil_socket_t, short, void* arg) noexcept;

  event_base* base_;
  Resolver* resolver_;
  std::string probe_name_;
  std::map<std::string, std::shared_ptr<const Channel>> channels_;
  std::map<std::uint64_t, std::unique_ptr<Delivery>> deliveries_;
  std::uint64_t next_id_ = 1;
  CounterFamily& notifications_;
  CounterFamily& attempts_;
};

}  // namespace mailpulse
