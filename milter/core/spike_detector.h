// SpikeDetector spots outbound floods — a phished account or a compromised host suddenly
// sending far more than it used to — from the messages the milter sees, per key (SASL login,
// client IP, envelope sender domain) and in the total outbound volume.
//
// Per key it keeps two exponentially decayed rates of messages and of recipients: a short one
// (time constant `short_window_seconds`, default 10 s) that follows the present, and a
// baseline (`baseline_seconds`, default 1 h) that remembers what is normal, corrected for the
// time the detector has been running, so a key that was quiet since start has a baseline near
// zero and a busy one its real average. A spike starts when the short rate has stayed above
// both an absolute minimum and `factor` times max(baseline, floor) for `hold_seconds`, and ends
// when it has stayed below `end_ratio` of that threshold for `end_hold_seconds` (hysteresis).
// While a key spikes its baseline does not learn, so a long flood never becomes normal.
//
// Memory is bounded per kind by `max_keys` entries, whatever an attacker does: the table is a
// Space-Saving summary (Metwally et al., 2005) over the decayed message counts — a new key
// replaces the entry with the smallest count and inherits that count as its error, so a key
// sending more than its share is never displaced by a stream of one-off senders. A spiking key
// is never evicted; when every entry spikes, new keys are counted as untracked.
//
// Pure logic: time (seconds on any monotonic clock) is an argument, events are returned.
// Not thread-safe: the glue serialises calls.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mailpulse {

enum class KeyKind : std::uint8_t { kSaslLogin, kClientIp, kSenderDomain, kTotal };
inline constexpr std::size_t kKeyKindCount = 4;
std::string_view KeyKindName(KeyKind k);  // "sasl_login", "client_ip", "sender_domain", "total"

struct SpikeSettings {
  double short_window_seconds = 10;
  double baseline_seconds = 3600;
  // Nothing starts within this long of the detector's start: baselines are still learning.
  double learning_seconds = 300;
  double min_messages_per_minute = 60;
  double min_recipients_per_minute = 3000;
  double factor = 5;
  // The baseline of a new or quiet key is taken as at least this.
  double floor_messages_per_minute = 2;
  double floor_recipients_per_minute = 20;
  double hold_seconds = 2;
  double end_ratio = 0.5;
  double end_hold_seconds = 30;
  std::size_t max_keys = 20000;   // per kind
  std::size_t domain_sample = 5;  // recipient domains kept for a spike's event
  // Which kinds are watched; the total always is.
  bool by_sasl_login = true;
  bool by_client_ip = true;
  bool by_sender_domain = true;
};

// One message as the detector needs it. Empty keys are not counted for their kind (no SASL
// login, for instance).
struct OutboundMessage {
  std::string_view sasl_login;
  std::string_view client_ip;
  std::string_view sender_domain;
  std::uint32_t recipients = 1;
  std::vector<std::string_view> recipient_domains;  // may be a sample
};

struct SpikeEvent {
  bool started = true;  // false: ended
  KeyKind kind = KeyKind::kTotal;
  std::string key;                 // empty for the total
  double messages_per_minute = 0;  // the short rate at the start (or at the end)
  double recipients_per_minute = 0;
  double baseline_messages_per_minute = 0;
  double baseline_recipients_per_minute = 0;
  std::vector<std::string> recipient_domains;  // a sample, first seen first
  double since_seconds = 0;                    // when the spike started (detector clock)
  double duration_seconds = 0;                 // ended: how long it lasted
  std::uint64_t messages = 0;                  // ended: messages counted during the spike
};

// A key's present state, for `mailpulse-milter top`.
struct KeyRate {
  KeyKind kind = KeyKind::kTotal;
  std::string key;
  double messages_per_minute = 0;
  double recipients_per_minute = 0;
  double baseline_messages_per_minute = 0;
  double baseline_recipients_per_minute = 0;
  bool spiking = false;
};

class SpikeDetector {
 public:
  SpikeDetector(const SpikeSettings& settings, double now);
  ~SpikeDetector();
  SpikeDetector(const SpikeDetector&) = delete;
  SpikeDetector& operator=(const SpikeDetector&) = delete;

  // Counts one outbound message at `now` (never earlier than a previous call's `now`).
  void OnMessage(const OutboundMessage& message, double now);
  // Re-evaluates keys whose state may change without traffic (a pending start, a spike that
  // may end). Call about once a second.
  void Tick(double now);
  // The spike events since the last call, in order.
  std::vector<SpikeEvent> TakeEvents();

  // The short-window message rate of a key now (0 when not tracked), for throttling.
  double MessagesPerMinute(KeyKind kind, std::string_view key, double now) const;
  // The `n` keys of `kind` with the highest short-window message rate now, highest first.
  std::vector<KeyRate> Top(KeyKind kind, std::size_t n, double now) const;
  KeyRate Total(double now) const;
  std::size_t spiking(KeyKind kind) const;

  std::size_t tracked(KeyKind kind) const;
  std::uint64_t evicted(KeyKind kind) const;
  std::uint64_t untracked(KeyKind kind) const;  // messages of keys the full table could not take
  // An estimate of the heap bytes held (entries, keys, hash buckets), for the memory bound.
  std::size_t ApproxBytes() const;

  class KeyTable;  // per kind: the Space-Saving table (spike_detector.cc)

 private:
  class DecayFactors;  // the exp() factors of the present, shared by the tables

  SpikeSettings settings_;
  double start_;
  double last_now_;  // time never runs backwards here
  std::unique_ptr<DecayFactors> factors_;
  std::array<std::unique_ptr<KeyTable>, kKeyKindCount> tables_;
  std::vector<SpikeEvent> events_;
};

}  // namespace mailpulse
