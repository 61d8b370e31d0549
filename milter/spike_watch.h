// SpikeWatch puts the milter's SpikeDetector (milter/core/spike_detector.h) into the daemon: the
// milter threads feed it each outbound message at end of message and ask it at MAIL whether to
// throttle; the event thread ticks it once a second and turns its events into one log line
// each, the mailpulse_milter_outbound_* metrics and OutboundSpike events on the event socket;
// GET /top on the metrics listener shows the busiest keys. Thread-safe: one mutex around the
// detector, held for a few hundred nanoseconds per message.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "milter/core/spike_detector.h"
#include "shared/config.h"
#include "shared/metrics.h"
#include "shared/status.h"

namespace mailpulse {

struct ThrottleSettings {
  bool on = false;
  double messages_per_minute = 120;
  std::set<std::string, std::less<>> allow;
};

struct SpikeWatchSettings {
  SpikeSettings detector;
  ThrottleSettings throttle;
};

// The milter.spike_* and milter.throttle* keys, checked; errors name the key and its file:line.
StatusOr<SpikeWatchSettings> SpikeWatchSettingsFrom(const Config& config);

class SpikeWatch {
 public:
  using PostEvent = std::function<void(std::string frame)>;
  // `now` is seconds on the monotonic clock; `hop` names this milter in events.
  SpikeWatch(const SpikeWatchSettings& settings, MetricsRegistry* registry, std::string hop,
             PostEvent post_event, double now);

  // Any thread: one outbound message that reached end of message.
  void OnMessage(const OutboundMessage& message, double now);
  // Any thread, at MAIL of an outbound transaction: the text of the 451 reply when a key of it
  // is over the throttling limit (and not allowed), else nullopt.
  std::optional<std::string> Throttle(std::string_view sasl_login, std::string_view client_ip,
                                      std::string_view sender_domain, double now);
  // Event thread, about once a second: ends and pending starts, logs, metrics, events.
  void Tick(double now, std::int64_t now_unix_us);
  // GET /top?n=N: the busiest keys of each kind and the total, as JSON.
  std::string TopJson(std::size_t n, double now) const;

 private:
  void Report(const SpikeEvent& e, std::int64_t now_unix_us, double now);

  ThrottleSettings throttle_;
  std::string hop_;
  PostEvent post_event_;
  mutable std::mutex mu_;
  SpikeDetector detector_;
  CounterFamily& spikes_;
  GaugeFamily& active_;
  CounterFamily& throttled_;
  GaugeFamily& tracked_;
};

}  // namespace mailpulse
