#include "probe/trace_command.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>

#include "shared/endpoint.h"
#include "shared/net/http_get.h"

namespace mailpulse {
namespace {

std::string Utc(std::int64_t unix_us) {
  const auto t = static_cast<std::time_t>(unix_us / 1000000);
  std::tm tm{};
  char buf[64] = "?";
  if (unix_us > 0 && gmtime_r(&t, &tm) != nullptr) {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%06lld UTC", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long long>(unix_us % 1000000));
  }
  return buf;
}

std::string Str(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

}  // namespace

std::string FormatJourney(const nlohmann::json& j) {
  char line[256];
  std::string out =
      "journey " + Str(j, "probe_id") + "  target " + Str(j, "target") + "  " + Str(j, "outcome");
  if (j.contains("roundtrip_seconds")) {
    std::snprintf(line, sizeof line, "  %.3f s", j["roundtrip_seconds"].get<double>());
    out += line;
  }
  out += "\n  sent           " + Utc(j.value("sent_unix_us", std::int64_t{0}));
  if (!Str(j, "queue_id").empty()) out += "  qid " + Str(j, "queue_id");
  out += "\n";
  for (const nlohmann::json& h : j.value("hops", nlohmann::json::array())) {
    std::snprintf(line, sizeof line, "  %-14s %s", Str(h, "hop").c_str(),
                  Utc(h.value("time_unix_us", std::int64_t{0})).c_str());
    out += line;
    if (h.contains("latency_seconds")) {
      std::snprintf(line, sizeof line, "  %+.3f s", h["latency_seconds"].get<double>());
      out += line;
    }
    if (!Str(h, "queue_id").empty()) out += "  qid " + Str(h, "queue_id");
    if (h.value("tls", false)) out += "  tls";
    out += "\n";
  }
  if (j.contains("bounce")) {
    const nlohmann::json& b = j["bounce"];
    out += "  bounced        reported by " + Str(b, "reporting_mta") + " (seen at " +
           Str(b, "hop") + ")\n";
    for (const nlohmann::json& r : b.value("recipients", nlohmann::json::array())) {
      out += "    " + Str(r, "final_recipient") + ": " + Str(r, "action") + " " + Str(r, "status") +
             "  " + Str(r, "diagnostic_code") + "\n";
    }
  }
  if (j.value("late_reports", 0) > 0) {
    out += "  late reports   " + std::to_string(j["late_reports"].get<int>()) + "\n";
  }
  return out;
}

CLI::App* AddTraceCommand(CLI::App* app, TraceOptions* o) {
  CLI::App* trace = app->add_subcommand(
      "trace", "Show the journeys of probe messages (or one, by its id) from the running daemon");
  trace->add_option("id", o->id, "A probe id (32 hex digits); none: the latest journeys");
  trace->add_option("--url", o->url, "The daemon's probe.metrics_listen (default 127.0.0.1:9798)");
  trace->add_option("--last", o->last, "How many of the latest journeys (default 20)")
      ->check(CLI::PositiveNumber);
  trace->add_flag("--json", o->json, "Print the daemon's JSON as it is");
  return trace;
}

int RunTraceCommand(const TraceOptions& o) {
  StatusOr<Endpoint> where = ParseEndpoint(o.url);
  if (!where.ok() || where->kind != Endpoint::Kind::kTcp) {
    std::fprintf(stderr, "mailpulse-probe trace: --url: expected HOST:PORT\n");
    return 2;
  }
  const HttpResponse fetch = HttpGet(*where, o.id.empty() ? "/journeys" : "/journeys/" + o.id);
  if (fetch.status == 404) {
    std::fprintf(stderr, "mailpulse-probe trace: no journey %s\n", o.id.c_str());
    return 1;
  }
  if (fetch.status != 200) {
    std::fprintf(stderr, "mailpulse-probe trace: no answer from %s (is the daemon running?)\n",
                 o.url.c_str());
    return 2;
  }
  if (o.json) {
    std::printf("%s\n", fetch.body.c_str());
    return 0;
  }
  const nlohmann::json parsed = nlohmann::json::parse(fetch.body, nullptr, false);
  if (parsed.is_discarded()) {
    std::fprintf(stderr, "mailpulse-probe trace: the daemon's answer is no JSON\n");
    return 2;
  }
  if (parsed.is_object()) {
    std::fputs(FormatJourney(parsed).c_str(), stdout);
    return 0;
  }
  const std::size_t n = parsed.size();
  const std::size_t from =
      n > static_cast<std::size_t>(o.last) ? n - static_cast<std::size_t>(o.last) : 0;
  for (std::size_t i = from; i < n; ++i) std::fputs(FormatJourney(parsed[i]).c_str(), stdout);
  if (n == 0) std::printf("no journeys yet\n");
  return 0;
}

}  // namespace mailpulse
