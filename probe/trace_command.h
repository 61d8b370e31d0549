// `mailpulse-probe trace [ID]`: the journeys of probe messages as the running daemon knows
// them (GET /journeys on probe.metrics_listen): each with its outcome, round trip and the
// timeline hop by hop; or one journey by its probe id. `--json` prints the daemon's JSON as it
// is. The formatting is pure and exposed for tests.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace CLI {
class App;
}

namespace mailpulse {

struct TraceOptions {
  std::string id;                      // empty: the latest journeys
  std::string url = "127.0.0.1:9798";  // the daemon's metrics listener, HOST:PORT
  int last = 20;                       // how many of the latest
  bool json = false;
};

CLI::App* AddTraceCommand(CLI::App* app, TraceOptions* options);
// 0 when it printed something; 1 when the id is unknown; 2 when the daemon cannot be reached.
int RunTraceCommand(const TraceOptions& options);

// One journey as text: a header line, then a line per hop with its latency.
std::string FormatJourney(const nlohmann::json& journey);

}  // namespace mailpulse
