// TrafficCounters: the milter's live traffic and reject counts, by direction, registered in a
// MetricsRegistry (so /metrics shows them) and readable as a proto::TrafficSnapshot for the
// event socket.
//
// Thread-safe: every milter thread updates the same instance. The per-direction counters are
// resolved once at construction, so counting a message is a few relaxed atomic adds; a reject
// takes a mutex (rejects are rare next to messages, and each needs a label lookup anyway).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

#include "milter/core/client_classifier.h"
#include "shared/metrics.h"
#include "shared/proto/event.pb.h"

namespace mailpulse {

// SMTP stage at which the MTA rejected something.
enum class RejectStage : std::uint8_t { kConnect, kHelo, kMail, kRcpt, kData, kEom };
std::string_view RejectStageName(RejectStage s);

class TrafficCounters {
 public:
  explicit TrafficCounters(MetricsRegistry* registry);

  void AddConnection(Direction d, bool tls);
  void AddMessage(Direction d, std::uint64_t recipients, std::uint64_t bytes);
  void AddAbort(Direction d);
  // `status` must already be validated (an enhanced status code or "unknown").
  void AddReject(Direction d, RejectStage stage, std::string_view status);

  // Fills counts since start into *out (time fields are left to the caller).
  void Snapshot(proto::TrafficSnapshot* out) const;

 private:
  struct PerDirection {
    Counter* connections;
    Counter* tls_connections;
    Counter* messages;
    Counter* recipients;
    Counter* bytes;
    Counter* aborts;
  };
  CounterFamily* rejects_family_;
  std::array<PerDirection, kDirectionCount> by_direction_{};
  mutable std::mutex rejects_mu_;
  std::map<std::tuple<Direction, RejectStage, std::string>, Counter*, std::less<>> rejects_;
};

}  // namespace mailpulse
