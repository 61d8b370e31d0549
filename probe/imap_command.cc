#include "probe/imap_command.h"

#include <event2/event.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <optional>
#include <utility>

#include "probe/check_plan.h"
#include "probe/check_verdict.h"
#include "probe/resolver.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"
#include "shared/net/libevent_log.h"

namespace mailpulse {
namespace {

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", s);
  return buf;
}

// The options of the confirmation, or why the command line cannot give them.
StatusOr<ImapOptions> OptionsFromCommandLine(const ImapFindOptions& o) {
  ImapOptions options;
  options.host = o.host;
  if (o.host.empty()) return Status::Error("--host is empty");
  options.tls = o.tls == "starttls" ? ImapTlsMode::kStartTls : ImapTlsMode::kImplicit;
  const int port = o.port != 0 ? o.port : options.tls == ImapTlsMode::kImplicit ? 993 : 143;
  if (port < 1 || port > 65535) return Status::Error("--port must be 1 to 65535");
  options.port = static_cast<std::uint16_t>(port);
  options.tls_name = o.tls_name;
  options.verify_certificate = !o.insecure;
  options.auth = o.auth == "login"   ? ImapAuthMethod::kLogin
                 : o.auth == "plain" ? ImapAuthMethod::kPlain
                                     : ImapAuthMethod::kAuto;
  options.user = o.user;
  StatusOr<std::string> password = ReadPasswordFile(o.password_file);
  if (!password.ok()) return password.status();
  options.password = std::move(*password);
  options.mailbox = o.mailbox;
  options.probe_id = o.probe_id;
  options.keep = o.keep;
  options.overall_timeout_seconds = o.timeout;
  options.phase_timeout_seconds = std::min(o.phase_timeout, o.timeout);
  ImapSessionOptions session;
  session.user = options.user;
  session.password = options.password;
  session.mailbox = options.mailbox;
  session.probe_id = options.probe_id;
  if (Status s = ImapSession::CheckOptions(session); !s.ok()) return s;
  return options;
}

// One confirmation on a private event loop. The confirmer is gone before the resolver, and
// the loop runs once more so that a cancelled DNS lookup delivers its (ignored) answer.
StatusOr<ImapResult> RunOnce(const ImapOptions& options, const ImapFindOptions& o) {
  EventBasePtr base(event_base_new());
  if (!base) return Status::Error("event_base_new failed");
  StatusOr<SslCtxPtr> tls_context = NewClientTlsContext(o.ca_file, options.verify_certificate);
  if (!tls_context.ok()) return tls_context.status();
  StatusOr<std::unique_ptr<Resolver>> resolver = Resolver::Create(base.get(), o.resolvers);
  if (!resolver.ok()) return Status::Error("--resolver: " + resolver.status().message());
  std::optional<ImapResult> result;
  {
    ImapConfirmer confirmer(base.get(), resolver->get(), tls_context->get(), options,
                            [&](ImapResult r) {
                              result = std::move(r);
                              event_base_loopbreak(base.get());
                            });
    confirmer.Start();
    event_base_dispatch(base.get());
  }
  for (int i = 0; i < 3; ++i) event_base_loop(base.get(), EVLOOP_NONBLOCK);
  if (!result) return Status::Error("the confirmation ended without a result");
  return std::move(*result);
}

}  // namespace

CLI::App* AddImapFindCommand(CLI::App* app, ImapFindOptions* o) {
  CLI::App* find = app->add_subcommand(
      "imap-find",
      "Find a probe message in a mailbox over IMAP, print its hop trail and delete it "
      "(exit 0 found, 1 not found, 2 error)");
  find->add_option("probe_id", o->probe_id, "The probe id: 32 hex digits")->required();
  find->add_option("--host", o->host, "IMAP server: a name or an address")->required();
  find->add_option("--port", o->port, "Port (default 993, or 143 with --tls starttls)");
  find->add_option("--tls", o->tls, "implicit (default) or starttls")
      ->check(CLI::IsMember({"implicit", "starttls"}));
  find->add_option("--tls-name", o->tls_name,
                   "SNI and the name the certificate must carry (default: --host)");
  CLI::Option* ca = find->add_option("--ca-file", o->ca_file,
                                     "Trust these CA certificates (PEM) instead of the system's");
  find->add_flag("--insecure", o->insecure, "Do not verify the server certificate")->excludes(ca);
  find->add_option("--user", o->user, "Log in as this user")->required();
  find->add_option("--password-file", o->password_file,
                   "File holding the password (mode 0600 or stricter)")
      ->required();
  find->add_option("--mailbox", o->mailbox, "Mailbox to search (default INBOX)");
  find->add_option("--auth", o->auth, "auto (default: PLAIN if offered, else LOGIN), login, plain")
      ->check(CLI::IsMember({"auto", "login", "plain"}));
  find->add_flag("--keep", o->keep, "Report only: leave the message in the mailbox");
  find->add_option("--resolver", o->resolvers,
                   "Ask this nameserver, IP[:PORT] (repeatable; default: /etc/resolv.conf's)");
  find->add_option("--timeout", o->timeout, "Overall timeout in seconds (default 30)")
      ->check(CLI::PositiveNumber);
  find->add_option("--phase-timeout", o->phase_timeout,
                   "Timeout of each step in seconds (default 10)")
      ->check(CLI::PositiveNumber);
  find->add_flag("--verbose,-v", o->verbose, "Log the steps to stderr");
  return find;
}

bool IsImapFindCommand(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] != '-') return std::string(argv[i]) == "imap-find";
  }
  return false;
}

int ImapFindExitCode(const ImapResult& result) {
  if (!result.outcome.success) return kImapFindError;
  return result.outcome.found() ? kImapFindFound : kImapFindNotFound;
}

std::string FormatImapFindReport(const ImapResult& result, const std::string& probe_id,
                                 const std::string& where, bool keep) {
  const ImapOutcome& o = result.outcome;
  const std::string took = FormatSeconds(result.total_seconds);
  std::string out;
  if (o.found()) {
    out = "FOUND probe " + probe_id + " in " + where + ": " + std::to_string(o.messages.size()) +
          (o.messages.size() == 1 ? " message, " : " messages, ") + (keep ? "kept" : "deleted") +
          " (" + took + ")\n";
  } else if (o.success) {
    out = "NOT FOUND probe " + probe_id + " in " + where + " (" + std::to_string(o.candidates) +
          " search hits, none with this id; " + took + ")\n";
  } else {
    std::string why = o.server_text.empty() ? o.detail
                      : o.detail.empty()    ? o.server_text
                                            : o.detail + "; server said: " + o.server_text;
    out = "ERROR " + std::string(ImapFailureName(o.failure)) + " at " +
          std::string(ImapPhaseName(o.phase)) + ": " + OneLine(why) + " (" + where + ", " + took +
          ")\n";
  }
  for (const ProbeMessage& m : o.messages) {
    out += "message uid " + std::to_string(m.uid) + "\n";
    out += "  Message-ID: " + OneLine(m.message_id) + "\n";
    out += "  Date: " + OneLine(m.date) + "\n";
    out += "  X-Mailpulse-Probe: " + OneLine(m.probe_header) + "\n";
    for (const std::string& hop : m.hop_stamps) out += "  X-Mailpulse-Hop: " + OneLine(hop) + "\n";
  }
  return out;
}

int RunImapFindCommand(const ImapFindOptions& o) {
  LogInit("mailpulse-probe", LogTarget::kStderr, o.verbose ? LogLevel::kDebug : LogLevel::kWarning);
  RouteLibeventLogs();
  StatusOr<ImapOptions> options = OptionsFromCommandLine(o);
  if (!options.ok()) {
    std::fprintf(stderr, "mailpulse-probe imap-find: %s\n", options.status().message().c_str());
    return kImapFindError;
  }
  StatusOr<ImapResult> result = RunOnce(*options, o);
  if (!result.ok()) {
    std::fprintf(stderr, "mailpulse-probe imap-find: %s\n", result.status().message().c_str());
    return kImapFindError;
  }
  const std::string where =
      OneLine(options->mailbox) + " at " +
      (result->address.empty() ? OneLine(options->host) + ":" + std::to_string(options->port)
                               : result->address);
  std::fputs(FormatImapFindReport(*result, options->probe_id, where, o.keep).c_str(), stdout);
  std::fflush(stdout);
  return ImapFindExitCode(*result);
}

}  // namespace mailpulse
