#include "probe/check_command.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <utility>

#include "shared/libevent_ptr.h"
#include "shared/logging.h"

namespace mailpulse {
namespace {

// strerror(3) without its shared buffer (GNU strerror_r returns the text).
std::string ErrnoText(int error) {
  char buf[128];
  return strerror_r(error, buf, sizeof buf);
}

constexpr std::size_t kMaxPasswordLength = 4096;
constexpr std::size_t kMaxReasonLength = 512;

struct EvDnsBaseDeleter {
  // Failing what is still in flight runs every callback, so nothing is left behind.
  void operator()(evdns_base* p) const noexcept { evdns_base_free(p, 1); }
};
using EvDnsBasePtr = std::unique_ptr<evdns_base, EvDnsBaseDeleter>;

// Server replies and reasons go onto one plugin output line: printable ASCII only, no "|"
// (the perfdata separator), bounded.
std::string OneLine(std::string_view text) { return Printable(text, kMaxReasonLength, "|"); }

std::string Printf(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, value);
  return buf;
}

std::string Threshold(const std::optional<double>& t) { return t ? Printf("%g", *t) : ""; }
std::string Threshold(const std::optional<int>& t) { return t ? std::to_string(*t) : ""; }

// Phases in the order they happen: with implicit TLS the handshake precedes the banner.
std::vector<Phase> PhaseOrder(bool implicit_tls) {
  std::vector<Phase> order;
  for (int i = 0; i < kPhaseCount; ++i) {
    const auto p = static_cast<Phase>(i);
    if (implicit_tls && p == Phase::kTlsHandshake) continue;
    order.push_back(p);
    if (implicit_tls && p == Phase::kConnect) order.push_back(Phase::kTlsHandshake);
  }
  return order;
}

double PhaseSeconds(const CheckResult& r, Phase p) {
  return r.phase_seconds[static_cast<std::size_t>(p)];
}

// "550 5.1.1 <x@y>: Recipient address rejected", or the glue's or session's reason.
std::string FailureReason(const CheckOutcome& o) {
  std::string reason;
  if (o.reply && !o.detail.empty()) {
    reason = o.detail + "; server said: " + o.reply->ToString();
  } else if (o.reply) {
    reason = o.reply->ToString();
  } else {
    reason = o.detail;
  }
  return OneLine(reason);
}

std::string Perfdata(const CheckResult& r, const CheckThresholds& t, bool implicit_tls,
                     std::int64_t now_unix) {
  std::string out;
  for (Phase p : PhaseOrder(implicit_tls)) {
    const double s = PhaseSeconds(r, p);
    if (s < 0) continue;
    out += std::string(PhaseName(p)) + Printf("=%.6fs;;;0 ", s);
  }
  out += Printf("total=%.6fs;", r.total_seconds) + Threshold(t.warn_seconds) + ";" +
         Threshold(t.crit_seconds) + ";0";
  if (r.tls.established && r.tls.not_after_unix != 0) {
    out += " cert_days=" + std::to_string(CertificateDaysLeft(r.tls.not_after_unix, now_unix)) +
           ";" + Threshold(t.cert_warn_days) + ";" + Threshold(t.cert_crit_days);
  }
  return out;
}

std::string CapabilitiesText(const Capabilities& c) {
  if (!c.esmtp) return "none (HELO only)";
  std::string out = "ESMTP";
  if (c.pipelining) out += " PIPELINING";
  if (c.size) out += " SIZE=" + std::to_string(*c.size);
  if (c.starttls) out += " STARTTLS";
  if (c.eight_bit_mime) out += " 8BITMIME";
  if (c.smtputf8) out += " SMTPUTF8";
  if (!c.auth_mechanisms.empty()) {
    out += " AUTH=";
    for (std::size_t i = 0; i < c.auth_mechanisms.size(); ++i) {
      out += (i > 0 ? "," : "") + OneLine(c.auth_mechanisms[i]);
    }
  }
  return out;
}

std::string UtcTime(std::int64_t unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  char buf[64] = "?";
  if (gmtime_r(&t, &tm) != nullptr) std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// "expires in 12 days", "expired 3 days ago" (whole days, rounded down either way).
std::string ExpiryText(std::int64_t not_after_unix, std::int64_t now_unix) {
  if (not_after_unix >= now_unix) {
    return "expires in " + std::to_string(CertificateDaysLeft(not_after_unix, now_unix)) + " days";
  }
  return "expired " + std::to_string((now_unix - not_after_unix) / 86400) + " days ago";
}

std::string TlsReport(const TlsFacts& tls, bool verify, std::int64_t now_unix) {
  std::string out = "tls            " + tls.version + " " + tls.cipher + "\n";
  out += "  subject      " + tls.subject + "\n";
  out += "  issuer       " + tls.issuer + "\n";
  std::string names;
  for (const std::string& n : tls.subject_alt_names) names += (names.empty() ? "" : " ") + n;
  if (!names.empty()) out += "  alt names    " + names + "\n";
  if (tls.not_after_unix != 0) {
    out += "  not after    " + UtcTime(tls.not_after_unix) + " (" +
           ExpiryText(tls.not_after_unix, now_unix) + ")\n";
  }
  out += "  verified     " +
         std::string(!verify        ? "not checked (--insecure)"
                     : tls.verified ? "yes"
                                    : "no: " + tls.verify_error) +
         "\n";
  return out;
}

// Bytes that would end or split an SMTP command line must not reach one.
Status CheckCommandText(std::string_view what, std::string_view text, bool allow_empty) {
  if (text.empty() && !allow_empty) return Status::Error(std::string(what) + " is empty");
  for (unsigned char c : text) {
    if (c < 0x21 || c == 0x7f || c == '<' || c == '>') {
      return Status::Error(std::string(what) + " '" + OneLine(text) +
                           "' contains a space, control character or angle bracket");
    }
  }
  return Status::Ok();
}

std::string DefaultHeloName() {
  char name[256] = "";
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

struct CheckPlan {
  Endpoint target;
  CheckOptions options;
  CheckThresholds thresholds;
  std::string ca_file;
};

Status CheckEnvelope(const CheckCommandOptions& o) {
  if (!o.send) return Status::Ok();
  if (Status s = CheckCommandText("--from", o.from, true); !s.ok()) return s;
  if (o.to.empty()) return Status::Error("--send needs --to");
  for (const std::string& to : o.to) {
    if (Status s = CheckCommandText("--to", to, false); !s.ok()) return s;
  }
  return Status::Ok();
}

StatusOr<CheckPlan> PlanCheck(const CheckCommandOptions& o) {
  CheckPlan plan;
  CheckOptions& c = plan.options;
  SessionOptions& s = c.session;
  s.tls = o.tls == "starttls"   ? TlsMode::kStartTls
          : o.tls == "implicit" ? TlsMode::kImplicit
                                : TlsMode::kNone;
  StatusOr<Endpoint> target = ParseCheckTarget(o.target, s.tls == TlsMode::kImplicit ? 465 : 25);
  if (!target.ok()) return target.status();
  plan.target = *target;
  c.host = plan.target.host;
  c.port = plan.target.port;
  c.family = o.ipv4 ? AddressFamily::kIpv4 : o.ipv6 ? AddressFamily::kIpv6 : AddressFamily::kAny;
  c.tls_name = o.tls_name;
  c.verify_certificate = !o.insecure;
  c.overall_timeout_seconds = o.timeout;
  c.phase_timeout_seconds = o.phase_timeout > 0 ? std::min(o.phase_timeout, o.timeout) : o.timeout;
  s.helo_name = o.helo.empty() ? DefaultHeloName() : o.helo;
  if (Status st = CheckCommandText("--helo", s.helo_name, false); !st.ok()) return st;
  if (Status st = CheckEnvelope(o); !st.ok()) return st;
  if (!o.auth_user.empty()) {
    StatusOr<std::string> password = ReadPasswordFile(o.auth_password_file);
    if (!password.ok()) return password.status();
    s.auth_user = o.auth_user;
    s.auth_password = std::move(*password);
  }
  s.kind = o.send                    ? CheckKind::kSend
           : !o.auth_user.empty()    ? CheckKind::kAuth
           : s.tls != TlsMode::kNone ? CheckKind::kTls
                                     : CheckKind::kConnect;
  if (o.send) {
    s.mail_from = o.from;
    s.rcpt_to = o.to;
    s.message = BuildProbeMessage({o.from, o.to, s.helo_name, NewProbeId(), std::time(nullptr)});
  }
  if (o.warn >= 0) plan.thresholds.warn_seconds = o.warn;
  if (o.crit >= 0) plan.thresholds.crit_seconds = o.crit;
  if (o.cert_warn_days >= 0) plan.thresholds.cert_warn_days = o.cert_warn_days;
  if (o.cert_crit_days >= 0) plan.thresholds.cert_crit_days = o.cert_crit_days;
  plan.ca_file = o.ca_file;
  return plan;
}

// One check on a private event loop. The runner is gone before the resolver, and the loop
// runs once more so that cancelled DNS lookups deliver their (ignored) answers and free them.
StatusOr<CheckResult> RunOnce(const CheckPlan& plan) {
  EventBasePtr base(event_base_new());
  if (!base) return Status::Error("event_base_new failed");
  SslCtxPtr tls_context;
  if (plan.options.session.tls != TlsMode::kNone) {
    StatusOr<SslCtxPtr> ctx = NewClientTlsContext(plan.ca_file, plan.options.verify_certificate);
    if (!ctx.ok()) return ctx.status();
    tls_context = std::move(*ctx);
  }
  EvDnsBasePtr dns(evdns_base_new(
      base.get(), EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE));
  if (!dns) return Status::Error("cannot set up the DNS resolver (evdns_base_new failed)");
  std::optional<CheckResult> result;
  {
    CheckRunner runner(base.get(), dns.get(), tls_context.get(), plan.options, [&](CheckResult r) {
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
  check->add_option("target", o->target, "HOST[:PORT] (port 25, or 465 with --tls implicit)")
      ->required();
  check->add_option("--tls", o->tls, "none, starttls or implicit (default none)")
      ->check(CLI::IsMember({"none", "starttls", "implicit"}));
  check->add_option("--tls-name", o->tls_name,
                    "SNI and the name the certificate must carry (default: HOST)");
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
  StatusOr<CheckPlan> plan = PlanCheck(options);
  StatusOr<CheckResult> result = plan.ok() ? RunOnce(*plan) : StatusOr<CheckResult>(plan.status());
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

std::string UnknownStatusLine(std::string_view message) {
  return "SMTP UNKNOWN - " + OneLine(message);
}

std::int64_t CertificateDaysLeft(std::int64_t not_after_unix, std::int64_t now_unix) {
  const std::int64_t seconds = not_after_unix - now_unix;
  return seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
}

CheckVerdict JudgeCheck(std::string_view target, const CheckResult& result,
                        const CheckThresholds& t, bool implicit_tls, std::int64_t now_unix) {
  CheckVerdict v;
  const std::string perfdata = Perfdata(result, t, implicit_tls, now_unix);
  const CheckOutcome& o = result.outcome;
  if (!o.success) {
    v.state = NagiosState::kCritical;
    const std::string reason = FailureReason(o);
    v.status_line = "SMTP CRITICAL - " + std::string(FailureKindName(o.failure)) + " at " +
                    std::string(PhaseName(o.phase)) + (reason.empty() ? "" : ": " + reason) +
                    " | " + perfdata;
    return v;
  }
  v.state = NagiosState::kOk;
  std::vector<std::string> reasons;
  const auto raise = [&v, &reasons](NagiosState s, std::string why) {
    if (static_cast<int>(s) > static_cast<int>(v.state)) v.state = s;
    reasons.push_back(std::move(why));
  };
  const std::string total = Printf("%.3fs", result.total_seconds);
  if (t.crit_seconds && result.total_seconds > *t.crit_seconds) {
    raise(NagiosState::kCritical,
          "total " + total + " above critical threshold " + Threshold(t.crit_seconds) + "s");
  } else if (t.warn_seconds && result.total_seconds > *t.warn_seconds) {
    raise(NagiosState::kWarning,
          "total " + total + " above warning threshold " + Threshold(t.warn_seconds) + "s");
  }
  if (result.tls.established && result.tls.not_after_unix != 0) {
    const std::int64_t days = CertificateDaysLeft(result.tls.not_after_unix, now_unix);
    const std::string when = "certificate " + ExpiryText(result.tls.not_after_unix, now_unix);
    if (t.cert_crit_days && days <= *t.cert_crit_days) {
      raise(NagiosState::kCritical, when + " (critical at " + Threshold(t.cert_crit_days) + ")");
    } else if (t.cert_warn_days && days <= *t.cert_warn_days) {
      raise(NagiosState::kWarning, when + " (warning at " + Threshold(t.cert_warn_days) + ")");
    }
  }
  static constexpr std::array<const char*, 4> kNames = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};
  std::string line = "SMTP " + std::string(kNames[static_cast<std::size_t>(v.state)]) + " - " +
                     std::string(target) + " " + total;
  for (std::size_t i = 0; i < reasons.size(); ++i) line += (i == 0 ? ": " : ", ") + reasons[i];
  v.status_line = line + " | " + perfdata;
  return v;
}

std::string FormatCheckReport(const CheckResult& result, bool implicit_tls, bool verify,
                              std::int64_t now_unix) {
  const CheckOutcome& o = result.outcome;
  std::string out;
  if (!result.address.empty()) out += "address        " + result.address + "\n";
  for (Phase p : PhaseOrder(implicit_tls)) {
    const double s = PhaseSeconds(result, p);
    const bool failed_here = !o.success && o.phase == p;
    if (s < 0 && !failed_here) continue;
    char line[64];
    if (s < 0) {
      std::snprintf(line, sizeof line, "%-14s %10s   ", std::string(PhaseName(p)).c_str(), "-");
    } else {
      std::snprintf(line, sizeof line, "%-14s %10.3f ms", std::string(PhaseName(p)).c_str(),
                    s * 1000);
    }
    out += line;
    if (failed_here)
      out += "  " + std::string(FailureKindName(o.failure)) + ": " + FailureReason(o);
    out += "\n";
  }
  out += Printf("total          %10.3f ms\n", result.total_seconds * 1000);
  if (result.tls.established) out += TlsReport(result.tls, verify, now_unix);
  const bool greeted = PhaseSeconds(result, Phase::kEhlo) >= 0 &&
                       (o.success || (o.phase != Phase::kEhlo && o.phase != Phase::kBanner));
  if (greeted) out += "capabilities   " + CapabilitiesText(o.capabilities) + "\n";
  if (!o.queue_id.empty()) out += "queue id       " + OneLine(o.queue_id) + "\n";
  return out;
}

StatusOr<Endpoint> ParseCheckTarget(std::string_view text, std::uint16_t default_port) {
  if (text.empty()) return Status::Error("no target given");
  if (text.substr(0, 5) == "unix:" || text.substr(0, 5) == "inet:") {
    return Status::Error("'" + std::string(text) + "': expected HOST[:PORT]");
  }
  Endpoint e;
  e.port = default_port;
  const std::size_t colons = static_cast<std::size_t>(std::count(text.begin(), text.end(), ':'));
  if (text.front() == '[' && text.back() == ']') {
    e.host = std::string(text.substr(1, text.size() - 2));  // "[v6]" without a port
  } else if (text.front() == '[' || colons == 1) {
    StatusOr<Endpoint> parsed = ParseEndpoint(text);
    if (!parsed.ok()) return parsed.status();
    e = *parsed;
  } else {
    e.host = std::string(text);  // a name, an IPv4 address or a bare IPv6 address
  }
  if (e.host.empty()) return Status::Error("'" + std::string(text) + "': no host");
  in6_addr v6{};
  const bool bracketed = text.front() == '[';
  if ((bracketed || e.host.find(':') != std::string::npos) &&
      inet_pton(AF_INET6, e.host.c_str(), &v6) != 1) {
    return Status::Error("'" + OneLine(text) + "': not an IPv6 address; expected HOST[:PORT] or " +
                         "[IPV6]:PORT");
  }
  for (unsigned char c : e.host) {
    if (c <= 0x20 || c == 0x7f || c == '/' || c == '[' || c == ']') {
      return Status::Error("'" + OneLine(text) + "': bad host name");
    }
  }
  return e;
}

StatusOr<std::string> ReadPasswordFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return Status::Error("cannot read password file " + path + ": " + ErrnoText(errno));
  }
  std::string password;
  struct stat st {};
  Status status;
  if (fstat(fd, &st) != 0) {
    status = Status::Error("cannot stat password file " + path + ": " + ErrnoText(errno));
  } else if (!S_ISREG(st.st_mode)) {
    status = Status::Error("password file " + path + " is not a regular file");
  } else if ((st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
    status = Status::Error("password file " + path + " is readable by others; chmod 600 it");
  } else {
    char buf[kMaxPasswordLength + 1];
    ssize_t n = 0;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 && password.size() <= kMaxPasswordLength) {
      password.append(buf, static_cast<std::size_t>(n));
    }
    if (n < 0)
      status = Status::Error("cannot read password file " + path + ": " + ErrnoText(errno));
  }
  ::close(fd);
  if (!status.ok()) return status;
  if (password.size() > kMaxPasswordLength) {
    return Status::Error("password file " + path + " is longer than 4096 bytes");
  }
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
    password.pop_back();
  }
  if (password.empty()) return Status::Error("password file " + path + " is empty");
  if (password.find('\0') != std::string::npos || password.find('\n') != std::string::npos) {
    return Status::Error("password file " + path + " holds more than one line");
  }
  return password;
}

std::string NewProbeId() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    // Never expected; uniqueness still matters more than secrecy for a Message-ID.
    const auto t = static_cast<unsigned long long>(std::time(nullptr));
    for (std::size_t i = 0; i < sizeof bytes; ++i) {
      bytes[i] = static_cast<unsigned char>((t >> (8 * (i % 8))) ^ (getpid() >> (i % 3)));
    }
  }
  std::string hex;
  static constexpr char kDigits[] = "0123456789abcdef";
  for (unsigned char b : bytes) {
    hex += kDigits[b >> 4];
    hex += kDigits[b & 0xf];
  }
  return hex;
}

std::string ProbeTokenHeaderLines(const ProbeMessageFields& /*fields*/) { return ""; }

std::string BuildProbeMessage(const ProbeMessageFields& f) {
  std::tm tm{};
  char date[64] = "";
  if (localtime_r(&f.date, &tm) != nullptr) {
    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);  // RFC 5322 3.3
  }
  std::string to;
  for (const std::string& r : f.to) to += (to.empty() ? "" : ", ") + ("<" + r + ">");
  const std::string from =
      f.from.empty() ? "<mailpulse-probe@" + f.domain + ">" : "<" + f.from + ">";
  std::string m = "Date: " + std::string(date) + "\r\n";
  m += "From: " + from + "\r\n";
  m += "To: " + to + "\r\n";
  m += "Subject: mailpulse probe\r\n";
  m += "Message-ID: <" + f.id + ".mailpulse@" + f.domain + ">\r\n";
  m += ProbeTokenHeaderLines(f);
  m += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += "Synthetic message from mailpulse-probe, sent to measure mail delivery.\r\n";
  m += "It can be discarded.\r\n";
  return m;
}

}  // namespace mailpulse
