// mailpulse-probe: the companion daemon. Today it owns the shared event socket and shows what
// the milters report (`mailpulse-probe events`) and runs one synthetic SMTP check on demand
// (`mailpulse-probe check`, docs/probe.md); scheduled checks and the round trip come next (see
// docs/architecture.md).
#include <event2/event.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "probe/check_command.h"
#include "probe/event_server.h"
#include "shared/config.h"
#include "shared/endpoint.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"

namespace mailpulse {
namespace {

nlohmann::json CountersJson(const proto::TrafficCounters& c) {
  return {{"connections", c.connections()},
          {"tls_connections", c.tls_connections()},
          {"messages", c.messages()},
          {"recipients", c.recipients()},
          {"bytes", c.bytes()},
          {"aborts", c.aborts()}};
}

// One JSON object per event, one per line, so scripts and tests can read the stream.
nlohmann::json EventJson(const std::string& peer, const proto::Event& event) {
  nlohmann::json j = {{"peer", peer}};
  if (event.has_traffic_snapshot()) {
    const proto::TrafficSnapshot& s = event.traffic_snapshot();
    nlohmann::json rejects = nlohmann::json::array();
    for (const auto& r : s.rejects()) {
      rejects.push_back({{"direction", r.direction()},
                         {"stage", r.stage()},
                         {"status", r.status()},
                         {"count", r.count()}});
    }
    j["traffic_snapshot"] = {{"source", s.source()},
                             {"time_unix_us", s.time_unix_us()},
                             {"start_unix_us", s.start_unix_us()},
                             {"inbound", CountersJson(s.inbound())},
                             {"outbound", CountersJson(s.outbound())},
                             {"local", CountersJson(s.local())},
                             {"rejects", rejects},
                             {"events_dropped", s.events_dropped()}};
  } else {
    j["unknown"] = true;
  }
  return j;
}

void OnSignal(evutil_socket_t, short, void* base) noexcept {
  event_base_loopbreak(static_cast<event_base*>(base));
}

int RunEvents(const std::string& config_path, const std::string& listen) {
  StatusOr<Config> config =
      config_path.empty() ? StatusOr<Config>(Config::Defaults()) : Config::Load(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "mailpulse-probe: %s\n", config.status().message().c_str());
    return 78;
  }
  if (!listen.empty()) {
    if (Status s = config->Set("probe.event_socket", listen); !s.ok()) {
      std::fprintf(stderr, "mailpulse-probe: --listen: %s\n", s.message().c_str());
      return 78;
    }
  }
  StatusOr<Endpoint> where = ParseEndpoint(config->GetString("probe.event_socket"));
  if (!where.ok()) {
    std::fprintf(stderr, "mailpulse-probe: probe.event_socket: %s\n",
                 where.status().message().c_str());
    return 78;
  }
  LogInit("mailpulse-probe", LogTarget::kStderr, LogLevel::kInfo);
  EventBasePtr base(event_base_new());
  auto server = EventServer::Create(base.get(), *where,
                                    [](const std::string& peer, const proto::Event& event) {
                                      std::printf("%s\n", EventJson(peer, event).dump().c_str());
                                      std::fflush(stdout);
                                    });
  if (!server.ok()) {
    MP_LOG_ERROR("%s", server.status().message().c_str());
    return 1;
  }
  EventPtr term(evsignal_new(base.get(), SIGTERM, &OnSignal, base.get()));
  EventPtr intr(evsignal_new(base.get(), SIGINT, &OnSignal, base.get()));
  evsignal_add(term.get(), nullptr);
  evsignal_add(intr.get(), nullptr);
  MP_LOG_INFO("listening for milter events on %s", where->ToString().c_str());
  event_base_dispatch(base.get());
  return 0;
}

// Whether the command line names the `check` subcommand, whose usage errors are plugin
// UNKNOWNs (exit 3) rather than CLI11's exit codes.
bool IsCheckCommand(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] != '-') return std::string(argv[i]) == "check";
  }
  return false;
}

}  // namespace
}  // namespace mailpulse

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"mailpulse-probe: SMTP checks, round trips and the milters' event socket"};
  app.set_version_flag("--version", std::string("mailpulse-probe ") + MAILPULSE_VERSION);
  app.require_subcommand(1);
  std::string config_path;
  std::string listen;
  CLI::App* events = app.add_subcommand(
      "events", "Own the event socket and print each milter event as one JSON line");
  events->add_option("--config", config_path, "TOML config file");
  events->add_option("--listen", listen,
                     "Event socket, overrides probe.event_socket (unix:/path or HOST:PORT)");
  mailpulse::CheckCommandOptions check_options;
  CLI::App* check = mailpulse::AddCheckCommand(&app, &check_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != static_cast<int>(CLI::ExitCodes::Success) &&
        mailpulse::IsCheckCommand(argc, argv)) {
      std::printf("%s\n", mailpulse::UnknownStatusLine(e.what()).c_str());
      return static_cast<int>(mailpulse::NagiosState::kUnknown);
    }
    return app.exit(e);
  }
  if (check->parsed()) return mailpulse::RunCheckCommand(check_options);
  return mailpulse::RunEvents(config_path, listen);
}
