// The textual conventions of the IMAP client, apart from the state machine that uses them:
// strings in commands (RFC 3501 section 4.3), base64 for AUTHENTICATE (RFC 4648), the header
// section a FETCH returns (RFC 5322 section 2.2: fields, folding) and the probe id in an
// X-Mailpulse-Probe value. Pure functions; every input may come from an untrusted server.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailpulse {

// Text from a peer made safe for one report or log line: printable ASCII kept, every other
// byte written as \xNN, cut with "..." once `max_length` characters are out.
std::string ImapPrintable(std::string_view s, std::size_t max_length = 200);

// ASCII case conversion (IMAP keywords are case-insensitive, RFC 3501 section 9).
std::string ImapUpper(std::string_view s);
std::string ImapLower(std::string_view s);

// The words of `text` split at spaces, empty ones dropped.
std::vector<std::string_view> ImapWords(std::string_view text);

// "4,9,12": a UID set (RFC 3501 section 9, sequence-set).
std::string ImapUidSet(const std::vector<std::uint32_t>& uids);

// Standard alphabet with "=" padding.
std::string ImapBase64Encode(std::string_view bytes);

// Whether `s` can be sent as a quoted string: 7-bit, no NUL, CR or LF (RFC 3501 section 9,
// "quoted"). Anything else must go as a literal.
bool IsImapQuotable(std::string_view s);
// `s` (IsImapQuotable) as a quoted string, with '"' and '\' escaped.
std::string QuoteImapString(std::string_view s);

struct HeaderField {
  std::string name;   // as written
  std::string value;  // unfolded (CRLF before whitespace removed), outer whitespace trimmed
};
// The fields of a header section, in order. Lines that are neither a field nor a
// continuation are skipped; the section ends at the first empty line.
std::vector<HeaderField> ParseHeaderFields(std::string_view header);
bool HeaderNameIs(const HeaderField& field, std::string_view name);  // ignoring case

// Whether `id` has the form of a probe id: 32 hex digits.
bool IsProbeId(std::string_view id);
// The id of an X-Mailpulse-Probe value ("v=1; id=<id>; t=...; ..."): the value of its one
// "id" field (names in any case, whitespace around ';' and '=' allowed), lower-cased; nullopt
// when there is no id field, more than one, or an empty one. Deliberately minimal: the full
// grammar and the MAC are ParseProbeToken's (shared/probe_token.h).
std::optional<std::string> ProbeIdOfHeader(std::string_view value);

}  // namespace mailpulse
