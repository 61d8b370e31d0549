// The command line of the built-in alerting, talking to the running daemon on its metrics
// listener (which takes commands only from loopback):
//   mailpulse-probe alerts [--json]          the alerts (firing first) and silences
//   mailpulse-probe ack ID [--by NAME]       acknowledge: no more repeats or escalation
//   mailpulse-probe silence [--rule GLOB] [--subject GLOB] --for DURATION [--comment TEXT]
//   mailpulse-probe silence --remove ID
// Exit status: 0 done, 1 refused (no such alert or silence, bad request), 2 daemon unreachable.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace CLI {
class App;
}

namespace mailpulse {

struct AlertsCommandOptions {
  std::string url = "127.0.0.1:9798";  // the daemon's metrics listener
  bool json = false;
  std::string id;  // ack: the alert; silence --remove: the silence
  std::string by;  // who acknowledges or silences (default: $SUDO_USER or $USER)
  std::string rule = "*";
  std::string subject = "*";
  std::string duration;
  std::string comment;
  bool remove = false;
};

struct AlertsCommands {
  CLI::App* alerts;
  CLI::App* ack;
  CLI::App* silence;
};

AlertsCommands AddAlertsCommands(CLI::App* app, AlertsCommandOptions* options);
int RunAlertsCommand(const AlertsCommands& commands, const AlertsCommandOptions& options);

// The text listing of GET /alerts.
std::string FormatAlerts(const nlohmann::json& reply, double now_unix);

}  // namespace mailpulse
