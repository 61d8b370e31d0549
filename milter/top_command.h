// `mailpulse-milter top`: the busiest outbound senders of the running milter, per key kind
// (SASL login, client address, sender domain) with their short-window rate and baseline, and
// the total — read from GET /top on milter.metrics_listen. The formatting is pure and exposed
// for tests.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace CLI {
class App;
}

namespace mailpulse {

struct TopOptions {
  std::string url = "127.0.0.1:9797";  // the milter's metrics listener, HOST:PORT
  int count = 10;                      // rows per kind
  bool json = false;
};

CLI::App* AddTopCommand(CLI::App* app, TopOptions* options);
// 0 when it printed the table; 2 when the milter cannot be reached or has spike detection off.
int RunTopCommand(const TopOptions& options);

std::string FormatTop(const nlohmann::json& top, int count);

}  // namespace mailpulse
