#include "probe/check_command.h"

#include <event2/event.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <utility>

#include "probe/resolver.h"
#include "shared/libevent_ptr.h"
#include "shared/logging.h"
#include "shared/net/libevent_log.h"

namespace mailpulse {
namespace {

std::int64_t UnixMicrosNow() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The spec the command line describes; *plan_error gets an option-level error.
StatusOr<TargetSpec> SpecFromCommandLine(const CheckCommandOptions& o) {
  TargetSpec spec;
  spec.tls = o.tls;
  StatusOr<Endpoint> target = ParseCheckTarget(o.target, 0);
  if (!target.ok()) return target.status();
  spec.host = target->host;
  spec.port = target->port;
  spec.mx = o.mx;
  spec.tls_name = o.tls_name;
  spec.verify = !o.insecure;
  spec.ca_file = o.ca_file;
  spec.family = o.ipv4 ? AddressFamily::kIpv4 : o.ipv6 ? AddressFamily::kIpv6 : AddressFamily::kAny;
  spec.helo = o.helo;
  spec.auth_user = o.auth_user;
  spec.auth_password_file = o.auth_password_file;
  spec.send = o.send;
  spec.from = o.from;
  spec.to = o.to;
  spec.timeout_seconds = o.timeout;
  spec.phase_timeout_seconds = o.phase_timeout > 0 ? o.phase_timeout : 0;
  if (o.warn >= 0) spec.thresholds.warn_seconds = o.warn;
  if (o.crit >= 0) spec.thresholds.crit_seconds = o.crit;
  if (o.cert_warn_days >= 0) spec.thresholds.cert_warn_days = o.cert_warn_days;
  if (o.cert_crit_days >= 0) spec.thresholds.cert_crit_days = o.cert_crit_days;
  return spec;
}

// PlanCheck's errors name the option they are about: "--from 'a b' contains a space ...".
StatusOr<CheckPlan> PlanFromCommandLine(const CheckCommandOptions& o) {
  StatusOr<TargetSpec> spec = SpecFromCommandLine(o);
  if (!spec.ok()) return spec.status();
  std::string field;
  StatusOr<CheckPlan> plan = PlanCheck(*spec, &field);
  if (plan.ok() || field.empty()) return plan;
  if (field == "auth_password_file") return plan.status();  // its errors name the file
  std::string option = field == "host" ? "target" : "--" + field;
  for (char& c : option) c = c == '_' ? '-' : c;
  return Status::Error(option + " " + plan.status().message());
}

// One check on a private event loop. The runner is gone before the resolver, and the loop
// runs once more so that cancelled DNS lookups deliver their (ignored) answers and free them.
StatusOr<CheckResult> RunOnce(const CheckPlan& plan, const std::vector<std::string>& resolvers) {
  EventBasePtr base(event_base_new());
  if (!base) return Status::Error("event_base_new failed");
  SslCtxPtr tls_context;
  if (plan.options.session.tls != TlsMode::kNone) {
    StatusOr<SslCtxPtr> ctx = NewClientTlsContext(plan.ca_file, plan.options.verify_certificate);
    if (!ctx.ok()) return ctx.status();
    tls_context = std::move(*ctx);
  }
  StatusOr<std::unique_ptr<Resolver>> resolver = Resolver::Create(base.get(), resolvers);
  if (!resolver.ok()) return Status::Error("--resolver: " + resolver.status().message());
  std::optional<CheckResult> result;
  {
    CheckRunner runner(base.get(), resolver->get(), tls_context.get(),
                       OptionsForRun(plan, UnixMicrosNow()), [&](CheckResult r) {
                         result = std::move(r);
                         event_base_loopbreak(base.get());
                       });
    runner.Start();
    event_base_dispatch(base.get());
  }
  for (int i = 0; i < 3; ++i) event_base_loop(base.get(), EVLOOP_NONBLOCK);
  if (!result) return Status::Error("the check ended without a result");
  return std::move(*result);
}

}  // namespace

CLI::App* AddCheckCommand(CLI::App* app, CheckCommandOptions* o) {
  CLI::App* check = app->add_subcommand(
      "check", "Run one SMTP check, print a per-phase report and a Nagios status line");
  check
      ->add_option("target", o->target,
                   "HOST[:PORT] (port 25, or 465 with --tls implicit); with --mx DOMAIN[:PORT]")
      ->required();
  check->add_flag("--mx", o->mx,
                  "TARGET is a mail domain: connect to its MX hosts in order (RFC 5321 5.1)");
  check->add_option("--resolver", o->resolvers,
                    "Ask this nameserver, IP[:PORT] (repeatable; default: /etc/resolv.conf's)");
  check->add_option("--tls", o->tls, "none, starttls or implicit (default none)")
      ->check(CLI::IsMember({"none", "starttls", "implicit"}));
  check->add_option("--tls-name", o->tls_name,
                    "SNI and the name the certificate must carry (default: HOST, or the MX host)");
  CLI::Option* user = check->add_option("--auth-user", o->auth_user, "AUTH as this user");
  CLI::Option* password =
      check->add_option("--auth-password-file", o->auth_password_file,
                        "File holding the AUTH password (mode 0600 or stricter)");
  user->needs(password);
  password->needs(user);
  CLI::Option* from = check->add_option("--from", o->from, "Envelope sender for --send");
  CLI::Option* to = check->add_option("--to", o->to, "Envelope recipient for --send (repeatable)");
  check->add_flag("--send", o->send, "Send a small probe message (needs --from and --to)")
      ->needs(from)
      ->needs(to);
  check->add_option("--helo", o->helo, "EHLO/HELO name (default: this host's name)");
  check->add_option("--timeout", o->timeout, "Overall timeout in seconds (default 10)")
      ->check(CLI::PositiveNumber);
  check
      ->add_option("--phase-timeout", o->phase_timeout,
                   "Timeout of each phase in seconds (default: --timeout)")
      ->check(CLI::PositiveNumber);
  check->add_option("--warn", o->warn, "WARNING when the total time exceeds S seconds")
      ->check(CLI::NonNegativeNumber);
  check->add_option("--crit", o->crit, "CRITICAL when the total time exceeds S seconds")
      ->check(CLI::NonNegativeNumber);
  check
      ->add_option("--cert-warn-days", o->cert_warn_days,
                   "WARNING when the certificate expires within N days")
      ->check(CLI::NonNegativeNumber);
  check
      ->add_option("--cert-crit-days", o->cert_crit_days,
                   "CRITICAL when the certificate expires within N days")
      ->check(CLI::NonNegativeNumber);
  CLI::Option* ca = check->add_option("--ca-file", o->ca_file,
                                      "Trust these CA certificates (PEM) instead of the system's");
  check->add_flag("--insecure", o->insecure, "Do not verify the server certificate")->excludes(ca);
  CLI::Option* v4 = check->add_flag("--ipv4,-4", o->ipv4, "Connect over IPv4 only");
  check->add_flag("--ipv6,-6", o->ipv6, "Connect over IPv6 only")->excludes(v4);
  check->add_flag("--quiet,-q", o->quiet, "Print only the status line (for Nagios)");
  check->add_flag("--verbose,-v", o->verbose, "Log the steps of the check to stderr");
  return check;
}

int RunCheckCommand(const CheckCommandOptions& options) {
  LogInit("mailpulse-probe", LogTarget::kStderr,
          options.verbose ? LogLevel::kDebug : LogLevel::kWarning);
  RouteLibeventLogs();
  StatusOr<CheckPlan> plan = PlanFromCommandLine(options);
  StatusOr<CheckResult> result =
      plan.ok() ? RunOnce(*plan, options.resolvers) : StatusOr<CheckResult>(plan.status());
  if (!result.ok()) {
    std::printf("%s\n", UnknownStatusLine(result.status().message()).c_str());
    return static_cast<int>(NagiosState::kUnknown);
  }
  const bool implicit = plan->options.session.tls == TlsMode::kImplicit;
  const std::int64_t now = std::time(nullptr);
  if (!options.quiet) {
    std::fputs(FormatCheckReport(*result, implicit, plan->options.verify_certificate, now).c_str(),
               stdout);
  }
  const CheckVerdict verdict =
      JudgeCheck(plan->target.ToString(), *result, plan->thresholds, implicit, now);
  std::printf("%s\n", verdict.status_line.c_str());
  std::fflush(stdout);
  return static_cast<int>(verdict.state);
}

}  // namespace mailpulse
