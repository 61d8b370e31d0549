// Reading a delivery status notification that returns a probe message: a multipart/report
// with report-type=delivery-status (RFC 6522, RFC 3464) whose third part carries the returned
// message (message/rfc822) or its headers (text/rfc822-headers). From it: the Reporting-MTA,
// each recipient's Final-Recipient (else Original-Recipient), Action, Status, Diagnostic-Code
// and Remote-MTA, and the X-Mailpulse-Probe header of the returned message. Real reports vary
// (Postfix, Sendmail, Exim, Exchange): header names in any case, folded fields, CRLF or LF,
// quoted or bare boundaries and parameters, missing optional fields, several recipients,
// nested multipart/alternative notification parts. The RFC 6533 types (message/global,
// message/global-delivery-status, message/global-headers) are read like their ASCII
// counterparts. A delivery-status or returned part in base64 or quoted-printable is decoded
// first (RFC 2046 forbids encoding message/rfc822, some MTAs do it anyway).
//
// Everything here is untrusted input: bounded, never asserts, and garbage is an error, never a
// crash. Every string in a result is valid UTF-8 without control characters (a bad byte
// becomes U+FFFD, a control character a space), so it can go into a proto3 string field (the
// event socket's reader rejects a frame with invalid UTF-8) or a log line as it is.
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
// first in every report seen; a returned message body beyond this is not needed). ParseDsn
// looks at no more than this of its input.
inline constexpr std::size_t kMaxDsnBytes = 256 * 1024;

// Recipients kept per report; further recipient blocks are counted, not kept.
inline constexpr std::size_t kMaxDsnRecipients = 100;

// Every text field of a result (addresses, MTA names, diagnostic codes) is cut to at most this
// many bytes, at a character boundary, so that a report of kMaxDsnRecipients recipients still
// fits one event frame.
inline constexpr std::size_t kMaxDsnFieldBytes = 512;

// The boundary of a Content-Type header value that announces a DSN ("multipart/report;
// report-type=delivery-status; boundary=..."), or nullopt for anything else: another type or
// report-type, no boundary, an empty one, or one that cannot be a boundary (over 200
// characters or not printable ASCII; RFC 2046 section 5.1.1 allows 70).
std::optional<std::string> DsnBoundary(std::string_view content_type);

struct DsnRecipient {
  std::string final_recipient;  // the address, without the "rfc822;" type and angle brackets;
                                // Original-Recipient's when Final-Recipient gives none
  std::string action;           // lower case: failed, delayed, delivered, relayed, expanded
  std::string status;           // "5.1.1"; empty when missing or not an RFC 3463 code
  std::string diagnostic_code;  // as given ("smtp; 550 5.1.1 ..."), unfolded
  std::string remote_mta;       // without "dns;"
};

struct DsnReport {
  std::string reporting_mta;             // without "dns;"
  std::vector<DsnRecipient> recipients;  // at most kMaxDsnRecipients, in report order
  std::size_t omitted_recipients = 0;    // recipient blocks beyond kMaxDsnRecipients
  // The returned message's X-Mailpulse-Probe header value (the first one), unfolded; empty if
  // it has none, if no message or headers were returned, or if the report was cut off inside
  // that header.
  std::string returned_probe_token;
};

// Parses the body of a DSN (everything after its header) split by `boundary`. Errors say
// what is missing or wrong ("no part delimited by the boundary", "no message/delivery-status
// part", "no recipient", "header line longer than 16384 bytes"). A body cut off before its
// close delimiter (at kMaxDsnBytes, say) is read as far as it goes; a field that may have
// been cut is dropped rather than reported incomplete.
StatusOr<DsnReport> ParseDsn(std::string_view body, std::string_view boundary);

}  // namespace mailpulse
