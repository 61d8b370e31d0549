// Reading a delivery status notification that returns a probe message: a multipart/report
// with report-type=delivery-status (RFC 6522, RFC 3464) whose third part carries the returned
// message (message/rfc822) or its headers (text/rfc822-headers). From it: the Reporting-MTA,
// each recipient's Final-Recipient (else Original-Recipient), Action, Status, Diagnostic-Code
// and Remote-MTA, and the X-Mailpulse-Probe header of the returned message. Real reports vary
// (Postfix, Sendmail, Exim, Exchange): header names in any case, folded fields, CRLF or LF,
// quoted or bare boundaries and parameters, missing optional fields, several recipients,
// base64 or quoted-printable parts are left undecoded but tolerated. Everything here is
// untrusted input: bounded, never asserts, and garbage is an error, never a crash.
// Pure; thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace mailpulse {

// The DSN body a milter keeps at most (the delivery-status part and the returned headers come
// first in every report seen; a returned message body beyond this is not needed).
inline constexpr std::size_t kMaxDsnBytes = 256 * 1024;

// The boundary of a Content-Type header value that announces a DSN ("multipart/report;
// report-type=delivery-status; boundary=..."), or nullopt for anything else.
std::optional<std::string> DsnBoundary(std::string_view content_type);

struct DsnRecipient {
  std::string final_recipient;  // the address, without the "rfc822;" type
  std::string action;           // lower case: failed, delayed, delivered, relayed, expanded
  std::string status;           // "5.1.1"
  std::string diagnostic_code;  // as given, unfolded, at most 512 characters
  std::string remote_mta;       // without "dns;"
};

struct DsnReport {
  std::string reporting_mta;  // without "dns;"
  std::vector<DsnRecipient> recipients;  // at most 100
  // The returned message's X-Mailpulse-Probe header value, unfolded; empty if it has none.
  std::string returned_probe_token;
};

// Parses the body of a DSN (everything after its header) split by `boundary`. Errors say
// what is missing ("no message/delivery-status part", "no recipient").
StatusOr<DsnReport> ParseDsn(std::string_view body, std::string_view boundary);

}  // namespace mailpulse
