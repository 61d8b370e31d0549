#include "probe/check_plan.h"

#include <arpa/inet.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <utility>

#include "shared/secret_file.h"

namespace mailpulse {
namespace {

// Bytes that would end or split an SMTP command line must not reach one.
Status CheckCommandText(std::string_view text, bool allow_empty) {
  if (text.empty() && !allow_empty) return Status::Error("is empty");
  for (unsigned char c : text) {
    if (c < 0x21 || c == 0x7f || c == '<' || c == '>') {
      return Status::Error("'" + OneLine(text) +
                           "' contains a space, control character or angle bracket");
    }
  }
  return Status::Ok();
}

// A name, an IPv4 address or an IPv6 address without brackets.
Status CheckHost(const std::string& host) {
  if (host.empty()) return Status::Error("no host given");
  in6_addr v6{};
  if (host.find(':') != std::string::npos && inet_pton(AF_INET6, host.c_str(), &v6) != 1) {
    return Status::Error("'" + OneLine(host) + "' is not an IPv6 address");
  }
  for (unsigned char c : host) {
    if (c <= 0x20 || c == 0x7f || c == '/' || c == '[' || c == ']') {
      return Status::Error("'" + OneLine(host) + "': bad host name");
    }
  }
  return Status::Ok();
}

bool IsAddressLiteral(const std::string& host) {
  in_addr v4{};
  in6_addr v6{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

StatusOr<TlsMode> ParseTlsMode(const std::string& text) {
  if (text == "none") return TlsMode::kNone;
  if (text == "starttls") return TlsMode::kStartTls;
  if (text == "implicit") return TlsMode::kImplicit;
  return Status::Error("expected none, starttls or implicit, got '" + OneLine(text) + "'");
}

// Records which field failed and passes the status on.
Status Blame(std::string* bad_field, const char* field, Status status) {
  if (!status.ok() && bad_field != nullptr) *bad_field = field;
  return status;
}

Status CheckEnvelope(const TargetSpec& spec, std::string* bad_field) {
  if (!spec.send) return Status::Ok();
  if (Status s = CheckCommandText(spec.from, true); !s.ok()) return Blame(bad_field, "from", s);
  if (spec.to.empty())
    return Blame(bad_field, "to", Status::Error("a send check needs a recipient"));
  for (const std::string& to : spec.to) {
    if (Status s = CheckCommandText(to, false); !s.ok()) return Blame(bad_field, "to", s);
  }
  return Status::Ok();
}

Status CheckTimeouts(const TargetSpec& spec, std::string* bad_field) {
  if (!(spec.timeout_seconds > 0)) {
    return Blame(bad_field, "timeout", Status::Error("must be more than 0 seconds"));
  }
  if (!(spec.phase_timeout_seconds >= 0)) {
    return Blame(bad_field, "phase_timeout", Status::Error("must not be negative"));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<CheckPlan> PlanCheck(const TargetSpec& spec, std::string* bad_field) {
  CheckPlan plan;
  CheckOptions& c = plan.options;
  SessionOptions& s = c.session;
  StatusOr<TlsMode> tls = ParseTlsMode(spec.tls);
  if (!tls.ok()) return Blame(bad_field, "tls", tls.status());
  s.tls = *tls;
  if (Status st = CheckHost(spec.host); !st.ok()) return Blame(bad_field, "host", st);
  if (spec.mx && IsAddressLiteral(spec.host)) {
    return Blame(bad_field, "mx",
                 Status::Error("needs a mail domain, not the address " + spec.host));
  }
  plan.target.kind = Endpoint::Kind::kTcp;
  plan.target.host = spec.host;
  plan.target.port = spec.port != 0 ? spec.port : s.tls == TlsMode::kImplicit ? 465 : 25;
  c.host = plan.target.host;
  c.port = plan.target.port;
  c.family = spec.family;
  c.mx_lookup = spec.mx;
  c.tls_name = spec.tls_name;
  c.verify_certificate = spec.verify;
  if (Status st = CheckTimeouts(spec, bad_field); !st.ok()) return st;
  c.overall_timeout_seconds = spec.timeout_seconds;
  c.phase_timeout_seconds = spec.phase_timeout_seconds > 0
                                ? std::min(spec.phase_timeout_seconds, spec.timeout_seconds)
                                : spec.timeout_seconds;
  s.helo_name = spec.helo.empty() ? DefaultHeloName() : spec.helo;
  if (Status st = CheckCommandText(s.helo_name, false); !st.ok()) {
    return Blame(bad_field, "helo", st);
  }
  if (Status st = CheckEnvelope(spec, bad_field); !st.ok()) return st;
  if (!spec.auth_user.empty()) {
    if (spec.auth_password_file.empty()) {
      return Blame(bad_field, "auth_password_file", Status::Error("AUTH needs a password file"));
    }
    StatusOr<std::string> password = ReadPasswordFile(spec.auth_password_file);
    if (!password.ok()) return Blame(bad_field, "auth_password_file", password.status());
    s.auth_user = spec.auth_user;
    s.auth_password = std::move(*password);
  }
  s.kind = spec.send                 ? CheckKind::kSend
           : !spec.auth_user.empty() ? CheckKind::kAuth
           : s.tls != TlsMode::kNone ? CheckKind::kTls
                                     : CheckKind::kConnect;
  if (spec.send) {
    s.mail_from = spec.from;
    s.rcpt_to = spec.to;
  }
  plan.thresholds = spec.thresholds;
  plan.ca_file = spec.ca_file;
  plan.mail_domain = s.helo_name;
  return plan;
}

CheckOptions OptionsForRun(const CheckPlan& plan, std::int64_t now_unix_us, std::string* probe_id,
                           const ProbeSigner* signer) {
  CheckOptions options = plan.options;
  if (options.session.kind == CheckKind::kSend) {
    ProbeMessageFields fields{options.session.mail_from,
                              options.session.rcpt_to,
                              plan.mail_domain,
                              NewProbeId(),
                              static_cast<std::time_t>(now_unix_us / 1000000),
                              ""};
    if (signer != nullptr && signer->key != nullptr) {
      StatusOr<std::string> token =
          SignProbeToken(*signer->key, fields.id, now_unix_us, signer->source);
      if (token.ok()) fields.token = std::move(*token);  // the name was validated at load
    }
    options.session.message = BuildProbeMessage(fields);
    if (probe_id != nullptr) *probe_id = fields.id;
  }
  return options;
}

std::string DefaultHeloName() {
  char name[256] = "";
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
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
  return ReadSecretFile(path, "password file");
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

std::string ProbeTokenHeaderLines(const ProbeMessageFields& fields) {
  if (fields.token.empty()) return "";
  return std::string(kProbeTokenHeader) + ": " + fields.token + "\r\n";
}

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
