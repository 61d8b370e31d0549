#include "probe/alerts_command.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "shared/clock.h"
#include "shared/config_text.h"
#include "shared/endpoint.h"
#include "shared/net/http_get.h"

namespace mailpulse {
namespace {

using nlohmann::json;

std::string Str(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

std::string Ago(double seconds) {
  char buf[32];
  if (seconds < 120) {
    std::snprintf(buf, sizeof buf, "%.0fs", seconds);
  } else if (seconds < 7200) {
    std::snprintf(buf, sizeof buf, "%.0fm", seconds / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fh", seconds / 3600);
  }
  return buf;
}

std::string Who(const std::string& by) {
  if (!by.empty()) return by;
  for (const char* var : {"SUDO_USER", "USER", "LOGNAME"}) {
    if (const char* v = std::getenv(var); v != nullptr && v[0] != '\0') return v;
  }
  return "";
}

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "mailpulse-probe: %s\n", message.c_str());
  return code;
}

// POSTs `body` to `path`; prints what the daemon said.
int Command(const Endpoint& where, const std::string& path, const json& body) {
  const HttpResponse r = HttpPost(where, path, body.dump());
  if (r.status == 0) return Fail("no answer from the daemon at " + where.ToString(), 2);
  const json reply = json::parse(r.body, nullptr, false);
  if (r.status != 200) {
    return Fail(reply.is_object() ? Str(reply, "error") : "HTTP " + std::to_string(r.status), 1);
  }
  if (reply.contains("acknowledged"))
    std::printf("acknowledged %s\n", Str(reply, "acknowledged").c_str());
  if (reply.contains("removed")) std::printf("silence %s removed\n", Str(reply, "removed").c_str());
  if (reply.contains("id")) std::printf("silence %s added\n", Str(reply, "id").c_str());
  return 0;
}

}  // namespace

std::string FormatAlerts(const json& reply, double now) {
  std::string out;
  const json alerts = reply.value("alerts", json::array());
  if (alerts.empty()) out += "no alerts\n";
  for (const json& a : alerts) {
    const std::string state = Str(a, "state");
    const double since = a.value(state == "pending" ? "since" : "fired_at", 0.0);
    char line[160];
    std::snprintf(line, sizeof line, "%-9s %-8s %s  (%s for %s)", state.c_str(),
                  Str(a, "severity").c_str(), Str(a, "id").c_str(), state.c_str(),
                  Ago(now - since).c_str());
    out += line;
    if (a.value("flapping", false)) out += "  flapping";
    if (!Str(a, "acked_by").empty()) out += "  acked by " + Str(a, "acked_by");
    out += "\n    " + Str(a, "summary") + "\n";
  }
  for (const json& s : reply.value("silences", json::array())) {
    out += "silence " + Str(s, "id") + ": rule " + Str(s, "rule") + " subject " +
           Str(s, "subject") + ", " + Ago(s.value("until", 0.0) - now) + " left";
    if (!Str(s, "created_by").empty()) out += ", by " + Str(s, "created_by");
    if (!Str(s, "comment").empty()) out += " (" + Str(s, "comment") + ")";
    out += "\n";
  }
  return out;
}

AlertsCommands AddAlertsCommands(CLI::App* app, AlertsCommandOptions* o) {
  AlertsCommands c{};
  c.alerts = app->add_subcommand("alerts", "The running daemon's alerts and silences");
  c.alerts->add_flag("--json", o->json, "Print the daemon's JSON as it is");
  c.ack = app->add_subcommand("ack", "Acknowledge an alert: no more repeats or escalation");
  c.ack->add_option("id", o->id, "The alert's id, RULE/SUBJECT (from `alerts`)")->required();
  c.silence = app->add_subcommand("silence", "Hold back notices of matching alerts for a while");
  c.silence->add_option("--rule", o->rule, "Glob on the rule's name ('*' any run)");
  c.silence->add_option("--subject", o->subject, "Glob on the subject (target, hop, milter)");
  c.silence->add_option("--for", o->duration, "How long: 30m, 2h, 1d is 24h");
  c.silence->add_option("--comment", o->comment, "Why (shown by `alerts`)");
  c.silence->add_option("--remove", o->id, "Lift the silence with this id instead");
  for (CLI::App* sub : {c.alerts, c.ack, c.silence}) {
    sub->add_option("--url", o->url, "The daemon's metrics listener, HOST:PORT");
  }
  for (CLI::App* sub : {c.ack, c.silence}) {
    sub->add_option("--by", o->by, "Who you are, for the record (default: your login)");
  }
  return c;
}

int RunAlertsCommand(const AlertsCommands& c, const AlertsCommandOptions& o) {
  StatusOr<Endpoint> where = ParseEndpoint(o.url);
  if (!where.ok()) return Fail("--url: " + where.status().message(), 1);
  if (c.alerts->parsed()) {
    const HttpResponse r = HttpGet(*where, "/alerts");
    if (r.status == 0) return Fail("no answer from the daemon at " + where->ToString(), 2);
    if (r.status != 200) return Fail("the daemon said HTTP " + std::to_string(r.status), 1);
    if (o.json) {
      std::printf("%s\n", r.body.c_str());
      return 0;
    }
    const json reply = json::parse(r.body, nullptr, false);
    if (!reply.is_object()) return Fail("malformed answer from the daemon", 1);
    std::fputs(FormatAlerts(reply, static_cast<double>(UnixMicros()) / 1e6).c_str(), stdout);
    return 0;
  }
  if (c.ack->parsed()) return Command(*where, "/alerts/ack", {{"id", o.id}, {"by", Who(o.by)}});
  if (!o.id.empty()) return Command(*where, "/silences/remove", {{"id", o.id}});
  if (o.duration.empty()) return Fail("silence: --for DURATION (or --remove ID)", 1);
  // Config durations stop at hours; a silence is often "1d".
  const bool days = o.duration.size() > 1 && o.duration.back() == 'd';
  StatusOr<double> seconds = config_text::ParseDurationText(
      days ? o.duration.substr(0, o.duration.size() - 1) + "h" : o.duration);
  if (seconds.ok() && days) seconds = *seconds * 24;
  if (!seconds.ok() || *seconds <= 0) return Fail("--for: expected a duration like 2h", 1);
  return Command(*where, "/silences",
                 {{"rule", o.rule},
                  {"subject", o.subject},
                  {"seconds", *seconds},
                  {"comment", o.comment},
                  {"by", Who(o.by)}});
}

}  // namespace mailpulse
