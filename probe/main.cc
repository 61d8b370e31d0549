// mailpulse-probe: the companion daemon and CLI.
//   run     the daemon: scheduled checks of every [[target]], /metrics, the shared event socket
//           the milters report to, SIGHUP reload (docs/probe.md, "The daemon")
//   check   one synthetic SMTP check with a report and a Nagios status line (docs/probe.md)
//   events  own the event socket and print each event as one JSON line (debugging)
//   imap-find  find a probe message in a mailbox over IMAP, print its hop trail, delete it
//   keygen  write a new probe key file (docs/roundtrip.md, "Probe token")
//   trace   show the journeys of probe messages from the running daemon
#include <event2/event.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "probe/alerts_command.h"
#include "probe/check_command.h"
#include "probe/event_json.h"
#include "probe/event_server.h"
#include "probe/imap_command.h"
#include "probe/keygen_command.h"
#include "probe/probe_config.h"
#include "probe/probe_daemon.h"
#include "probe/trace_command.h"
#include "shared/config.h"
#include "shared/endpoint.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"
#include "shared/net/libevent_log.h"
#include "shared/net/privileges.h"

namespace mailpulse {
namespace {

constexpr char kDefaultConfigPath[] = "/etc/mailpulse/mailpulse.toml";
constexpr char kDefaultUser[] = "mailpulse";
constexpr int kExitConfig = 78;  // EX_CONFIG, as sysexits(3)

struct RunOptions {
  std::string config_path;
  bool foreground = false;
  bool check_config = false;
  bool dump_config = false;
  std::string metrics_listen;
  std::string event_socket;
};

void OnSignal(evutil_socket_t, short, void* base) noexcept {
  event_base_loopbreak(static_cast<event_base*>(base));
}

// The file named, else the default file if it exists, else "" (built-in defaults).
std::string ConfigPath(const std::string& given) {
  if (!given.empty()) return given;
  return access(kDefaultConfigPath, F_OK) == 0 ? kDefaultConfigPath : "";
}

StatusOr<Config> LoadConfig(const std::string& path) {
  return path.empty() ? StatusOr<Config>(Config::Defaults()) : Config::Load(path);
}

int RunEvents(const std::string& config_path, const std::string& listen) {
  StatusOr<Config> config = LoadConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "mailpulse-probe: %s\n", config.status().message().c_str());
    return kExitConfig;
  }
  if (!listen.empty()) {
    if (Status s = config->Set("probe.event_socket", listen); !s.ok()) {
      std::fprintf(stderr, "mailpulse-probe: --listen: %s\n", s.message().c_str());
      return kExitConfig;
    }
  }
  StatusOr<Endpoint> where = ParseEndpoint(config->GetString("probe.event_socket"));
  if (!where.ok()) {
    std::fprintf(stderr, "mailpulse-probe: probe.event_socket: %s\n",
                 where.status().message().c_str());
    return kExitConfig;
  }
  LogInit("mailpulse-probe", LogTarget::kStderr, LogLevel::kInfo);
  RouteLibeventLogs();
  EventBasePtr base(event_base_new());
  auto server = EventServer::Create(
      base.get(), *where, [](const std::string& peer, const proto::Event& event) {
        // Peer text may be invalid UTF-8: replaced, not thrown on.
        const std::string line =
            EventJson(peer, event).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        std::printf("%s\n", line.c_str());
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

// Binds, drops root, detaches (unless in the foreground) and runs the daemon.
int Serve(const std::string& path, ProbeSettings settings, bool foreground) {
  std::optional<RunAs> run_as;
  if (getuid() == 0) {
    bool fell_back = false;
    StatusOr<RunAs> r = ChooseRunAs(settings.user, kDefaultUser, "probe.user", &fell_back);
    if (!r.ok()) {
      MP_LOG_ERROR("%s", r.status().message().c_str());
      return kExitConfig;
    }
    if (fell_back) {
      MP_LOG_WARNING(
          "user '%s' does not exist; running as 'nobody' (create it, or set "
          "probe.user)",
          kDefaultUser);
    }
    run_as = *r;
  }
  StatusOr<std::unique_ptr<ProbeDaemon>> daemon = ProbeDaemon::Create(path, std::move(settings));
  if (!daemon.ok()) {
    MP_LOG_ERROR("%s", daemon.status().message().c_str());
    return 1;
  }
  if (run_as) {
    if (Status s = (*daemon)->DropPrivileges(*run_as); !s.ok()) {
      MP_LOG_ERROR("cannot drop privileges to %s: %s", run_as->user.c_str(), s.message().c_str());
      return 1;
    }
  }
  if (!foreground) {
    if (::daemon(0, 0) != 0) {
      MP_LOG_ERROR("cannot detach: %s", std::strerror(errno));
      return 1;
    }
    if (Status s = (*daemon)->AfterFork(); !s.ok()) {
      MP_LOG_ERROR("%s", s.message().c_str());
      return 1;
    }
  }
  return (*daemon)->Run();
}

int RunDaemon(const RunOptions& o) {
  const std::string path = ConfigPath(o.config_path);
  StatusOr<Config> config = LoadConfig(path);
  if (!config.ok()) {
    std::fprintf(stderr, "mailpulse-probe: %s\n", config.status().message().c_str());
    return kExitConfig;
  }
  for (const auto& [key, value, flag] :
       {std::tuple<const char*, std::string, const char*>{"probe.metrics_listen", o.metrics_listen,
                                                          "--metrics-listen"},
        {"probe.event_socket", o.event_socket, "--event-socket"}}) {
    if (value.empty()) continue;
    if (Status s = config->Set(key, value); !s.ok()) {
      std::fprintf(stderr, "mailpulse-probe: %s: %s\n", flag, s.message().c_str());
      return kExitConfig;
    }
  }
  if (o.foreground) (void)config->Set("log.target", "stderr");
  StatusOr<ProbeSettings> settings = LoadProbeSettings(*config);
  if (!settings.ok()) {
    std::fprintf(stderr, "mailpulse-probe: %s\n", settings.status().message().c_str());
    return kExitConfig;
  }
  if (o.dump_config) {
    std::fputs(config->Dump().c_str(), stdout);
    return 0;
  }
  if (o.check_config) {
    std::printf("mailpulse-probe: configuration %s is valid (%zu targets)\n",
                path.empty() ? "(built-in defaults)" : path.c_str(), settings->targets.size());
    return 0;
  }
  LogInit("mailpulse-probe", *ParseLogTarget(settings->log_target),
          *ParseLogLevel(settings->log_level));
  RouteLibeventLogs();
  return Serve(path, std::move(*settings), o.foreground);
}

CLI::App* AddRunCommand(CLI::App* app, RunOptions* o) {
  CLI::App* run = app->add_subcommand(
      "run",
      "The daemon: check every [[target]] on its schedule, serve /metrics, own the "
      "event socket; SIGHUP reloads");
  run->add_option("--config", o->config_path,
                  "TOML config file (default /etc/mailpulse/mailpulse.toml if it exists)");
  run->add_flag("--foreground", o->foreground, "Do not detach; log to stderr");
  run->add_flag("--check-config", o->check_config, "Validate the configuration and exit");
  run->add_flag("--dump-config", o->dump_config, "Print the effective configuration and exit");
  run->add_option("--metrics-listen", o->metrics_listen,
                  "ADDR:PORT for /metrics, overrides probe.metrics_listen");
  run->add_option("--event-socket", o->event_socket,
                  "Event socket, overrides probe.event_socket (unix:/path or HOST:PORT)");
  return run;
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
  mailpulse::RunOptions run_options;
  CLI::App* run = mailpulse::AddRunCommand(&app, &run_options);
  std::string config_path;
  std::string listen;
  CLI::App* events = app.add_subcommand(
      "events", "Own the event socket and print each milter event as one JSON line");
  events->add_option("--config", config_path, "TOML config file");
  events->add_option("--listen", listen,
                     "Event socket, overrides probe.event_socket (unix:/path or HOST:PORT)");
  mailpulse::CheckCommandOptions check_options;
  CLI::App* check = mailpulse::AddCheckCommand(&app, &check_options);
  mailpulse::ImapFindOptions imap_find_options;
  CLI::App* imap_find = mailpulse::AddImapFindCommand(&app, &imap_find_options);
  std::string key_path;
  CLI::App* keygen = mailpulse::AddKeygenCommand(&app, &key_path);
  mailpulse::TraceOptions trace_options;
  CLI::App* trace = mailpulse::AddTraceCommand(&app, &trace_options);
  mailpulse::AlertsCommandOptions alerts_options;
  const mailpulse::AlertsCommands alerts = mailpulse::AddAlertsCommands(&app, &alerts_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != static_cast<int>(CLI::ExitCodes::Success) &&
        mailpulse::IsCheckCommand(argc, argv)) {
      std::printf("%s\n", mailpulse::UnknownStatusLine(e.what()).c_str());
      return static_cast<int>(mailpulse::NagiosState::kUnknown);
    }
    if (mailpulse::IsImapFindCommand(argc, argv)) {
      return app.exit(e) == 0 ? 0 : mailpulse::kImapFindError;  // 1 would mean "not found"
    }
    return app.exit(e);
  }
  if (check->parsed()) return mailpulse::RunCheckCommand(check_options);
  if (imap_find->parsed()) return mailpulse::RunImapFindCommand(imap_find_options);
  if (run->parsed()) return mailpulse::RunDaemon(run_options);
  if (keygen->parsed()) return mailpulse::RunKeygenCommand(key_path);
  if (trace->parsed()) return mailpulse::RunTraceCommand(trace_options);
  if (alerts.alerts->parsed() || alerts.ack->parsed() || alerts.silence->parsed()) {
    return mailpulse::RunAlertsCommand(alerts, alerts_options);
  }
  return mailpulse::RunEvents(config_path, listen);
}
