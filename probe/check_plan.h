// From what a person or a config file says to check, to the options of a CheckRunner.
// TargetSpec is the common form of `mailpulse-probe check`'s command line and of a [[target]]
// section; PlanCheck validates it once (addresses that could split an SMTP command, the TLS
// mode, the password file's mode) and resolves the defaults; OptionsForRun then gives each run
// of the plan its own synthetic message. Also here: target parsing, the password file and the
// probe message. Pure but for ReadPasswordFile, DefaultHeloName and NewProbeId.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "probe/check_runner.h"
#include "probe/check_verdict.h"
#include "shared/endpoint.h"
#include "shared/probe_token.h"
#include "shared/status.h"

namespace mailpulse {

struct TargetSpec {
  std::string host;          // a DNS name or a literal IPv4/IPv6 address (no brackets)
  std::uint16_t port = 0;    // 0: 25, or 465 with tls "implicit"
  bool mx = false;           // host is a mail domain: check its MX hosts (not an address)
  std::string tls = "none";  // none | starttls | implicit
  std::string tls_name;      // SNI and certificate name; empty: host, or the MX host
  bool verify = true;
  std::string ca_file;  // empty: the system CA store
  AddressFamily family = AddressFamily::kAny;
  std::string helo;  // empty: this host's name
  std::string auth_user;
  std::string auth_password_file;
  bool send = false;
  std::string from;
  std::vector<std::string> to;
  double timeout_seconds = 10;
  double phase_timeout_seconds = 0;  // 0: the same as timeout_seconds
  CheckThresholds thresholds;
};

struct CheckPlan {
  Endpoint target;       // host and effective port, as reports name the server
  CheckOptions options;  // complete but for a send check's message (see OptionsForRun)
  CheckThresholds thresholds;
  std::string ca_file;
  std::string mail_domain;  // right-hand side of the probe message's Message-ID
};

// Validates `spec` and fills in its defaults; reads the password file. On error the message
// says what is wrong without naming the field, and *bad_field (when given) names the
// TargetSpec field ("from", "auth_password_file", ...), so the caller can say "--from" or
// "FILE:LINE: target.from".
StatusOr<CheckPlan> PlanCheck(const TargetSpec& spec, std::string* bad_field = nullptr);

// Who signs probe messages: the shared key and this probe's name (the token's src).
struct ProbeSigner {
  const ProbeKey* key = nullptr;
  std::string source;
};

// The options of one run of `plan`: a send check gets a fresh probe message (a new id, which
// *probe_id receives when given, and `now_unix_us` as its Date), signed with an
// X-Mailpulse-Probe token when `signer` is given.
CheckOptions OptionsForRun(const CheckPlan& plan, std::int64_t now_unix_us,
                           std::string* probe_id = nullptr, const ProbeSigner* signer = nullptr);

// HOST[:PORT] with `default_port` when none is given; "[2001:db8::1]:25" or a bare IPv6.
StatusOr<Endpoint> ParseCheckTarget(std::string_view text, std::uint16_t default_port);

// The password from a file that only its owner may read; trailing CR/LF removed (the rules
// of ReadSecretFile, shared/secret_file.h).
StatusOr<std::string> ReadPasswordFile(const std::string& path);

// This host's name (gethostname), or "localhost".
std::string DefaultHeloName();

// The synthetic message of a send check.
struct ProbeMessageFields {
  std::string from;  // envelope sender; "" is the null sender
  std::vector<std::string> to;
  std::string domain;  // right-hand side of the Message-ID
  std::string id;      // 128-bit random hex: the Message-ID and the probe token's id
  std::time_t date = 0;
  std::string token;  // the X-Mailpulse-Probe header value; empty: an unsigned message
};
// The `X-Mailpulse-Probe:` header line of `fields` ending in CRLF, or "" without a token.
std::string ProbeTokenHeaderLines(const ProbeMessageFields& fields);
// Date, From, To, Subject "mailpulse probe", Message-ID, the token line, and a short body.
std::string BuildProbeMessage(const ProbeMessageFields& fields);
std::string NewProbeId();

}  // namespace mailpulse
