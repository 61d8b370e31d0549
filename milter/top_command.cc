#include "milter/top_command.h"

#include <CLI/CLI.hpp>
#include <cstdio>

#include "shared/endpoint.h"
#include "shared/net/http_get.h"

namespace mailpulse {
namespace {

std::string Row(const char* kind, const nlohmann::json& r) {
  char line[512];
  std::snprintf(
      line, sizeof line, "  %-14s %-40s %9.1f %9.1f %9.1f %9.1f%s\n", kind,
      r.value("key", std::string()).substr(0, 40).c_str(), r.value("messages_per_minute", 0.0),
      r.value("baseline_messages_per_minute", 0.0), r.value("recipients_per_minute", 0.0),
      r.value("baseline_recipients_per_minute", 0.0), r.value("spiking", false) ? "  SPIKE" : "");
  return line;
}

}  // namespace

std::string FormatTop(const nlohmann::json& top, int count) {
  std::string out =
      "  kind           key                                       msgs/min  baseline "
      "rcpts/min  baseline\n";
  if (top.contains("total")) out += Row("total", top["total"]);
  for (const char* kind : {"sasl_login", "client_ip", "sender_domain"}) {
    if (!top.contains(kind)) continue;
    const nlohmann::json& k = top[kind];
    int shown = 0;
    for (const nlohmann::json& r : k.value("top", nlohmann::json::array())) {
      if (shown++ == count) break;
      out += Row(kind, r);
    }
    char line[160];
    std::snprintf(line, sizeof line, "  (%s: %llu keys tracked, %llu evicted)\n", kind,
                  k.value("tracked", 0ULL), k.value("evicted", 0ULL));
    out += line;
  }
  return out;
}

CLI::App* AddTopCommand(CLI::App* app, TopOptions* o) {
  CLI::App* top = app->add_subcommand(
      "top", "Show the busiest outbound senders of the running milter, with rate and baseline");
  top->add_option("--url", o->url, "The milter's milter.metrics_listen (default 127.0.0.1:9797)");
  top->add_option("-n,--count", o->count, "Rows per key kind (default 10, at most 20)")
      ->check(CLI::Range(1, 20));
  top->add_flag("--json", o->json, "Print the milter's JSON as it is");
  return top;
}

int RunTopCommand(const TopOptions& o) {
  StatusOr<Endpoint> where = ParseEndpoint(o.url);
  if (!where.ok() || where->kind != Endpoint::Kind::kTcp) {
    std::fprintf(stderr, "mailpulse-milter top: --url: expected HOST:PORT\n");
    return 2;
  }
  const HttpResponse r = HttpGet(*where, "/top");
  if (r.status == 404) {
    std::fprintf(stderr, "mailpulse-milter top: spike detection is off in that milter\n");
    return 2;
  }
  if (r.status != 200) {
    std::fprintf(stderr, "mailpulse-milter top: no answer from %s (is the milter running?)\n",
                 o.url.c_str());
    return 2;
  }
  if (o.json) {
    std::printf("%s\n", r.body.c_str());
    return 0;
  }
  const nlohmann::json parsed = nlohmann::json::parse(r.body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    std::fprintf(stderr, "mailpulse-milter top: the milter's answer is no JSON object\n");
    return 2;
  }
  std::fputs(FormatTop(parsed, o.count).c_str(), stdout);
  return 0;
}

}  // namespace mailpulse
