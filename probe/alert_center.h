// AlertCenter is the probe daemon's built-in alerting (docs/alerting.md): it feeds what the
// daemon learns — finished checks, finished journeys, the milters' events, the passing of
// time — through AlertSignals into the AlertEngine once a second, hands the notices to
// AlertNotifiers, keeps the engine's state in probe.alert_state_file (written after every
// change, atomically, mode 0600) so firing alerts, acknowledgements and silences survive a
// restart, and answers the command line: GET /alerts, POST /alerts/ack, /silences,
// /silences/remove (loopback peers only, see MetricsHttpServer). Metrics:
// mailpulse_alerts_firing{rule}, mailpulse_alert_notices_total{rule,kind}.
// Glue; not thread-safe: lives on the daemon's loop.
#pragma once

#include <event2/event.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "probe/alert_notifier.h"
#include "probe/alert_signals.h"
#include "probe/alerts/alert_engine.h"
#include "shared/libevent_ptr.h"
#include "shared/metrics.h"

namespace mailpulse {

class AlertCenter {
 public:
  AlertCenter(event_base* base, Resolver* resolver, MetricsRegistry* registry,
              std::string probe_name, std::string state_file);
  AlertCenter(const AlertCenter&) = delete;
  AlertCenter& operator=(const AlertCenter&) = delete;

  // Rules and notifiers, at start and on reload (alerts of rules kept keep their state).
  // Errors (a notifier's TLS context) change nothing.
  Status Configure(const AlertSettings& settings);
  // Reads the state file, if there is one; a missing file is no error, a bad one is logged.
  void LoadState();
  void Start();  // the once-a-second tick

  void OnCheck(const std::string& target, const CheckResult& result, const CheckVerdict& verdict);
  void OnJourney(const Journey& journey);
  void OnEvent(const proto::Event& event);

  // GET /alerts; nullopt for other paths.
  std::optional<std::string> Get(std::string_view path) const;
  // POST /alerts/ack, /silences, /silences/remove: status and JSON body; nullopt: not ours.
  std::optional<std::pair<int, std::string>> Post(std::string_view path, std::string_view body);

 private:
  static void OnTimer(evutil_socket_t, short, void* arg) noexcept;
  void Observe(const std::vector<Observation>& observations);
  void Tick();
  void SaveState();

  event_base* base_;
  std::string state_file_;
  AlertEngine engine_;
  AlertSignals signals_{{}};
  AlertNotifiers notifiers_;
  EventPtr timer_;
  GaugeFamily& firing_;
  CounterFamily& notices_;
  std::vector<std::string> rule_names_;
  std::string saved_;  // the state last written
  bool save_failed_ = false;
};

}  // namespace mailpulse
