// Events as JSON objects, one per line, for `mailpulse-probe events` (scripts and tests read
// the stream). Pure; thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "shared/proto/event.pb.h"

namespace mailpulse {

// {"peer": ..., "traffic_snapshot": {...}} or {"peer": ..., "probe_result": {...}}; an event of
// a kind this build does not know is {"peer": ..., "unknown": true}.
nlohmann::json EventJson(const std::string& peer, const proto::Event& event);

}  // namespace mailpulse
