// Reading the MIME structure of untrusted mail text, as much as a DSN needs: header blocks
// (RFC 5322 section 2.2, folding 2.2.3), Content-Type values (RFC 2045 section 5.1), multipart
// bodies (RFC 2046 section 5.1.1) and the base64 and quoted-printable transfer encodings
// (RFC 2045 sections 6.7, 6.8). Lines may end in CRLF or LF alone. Everything is linear in its
// input, bounded, and never asserts: what does not parse is skipped or reported, never trusted.
// Pure; thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/status.h"

namespace mailpulse::mime {

// The longest header line accepted, folded or not (RFC 5322 allows 998 characters; real MTAs
// write longer, nobody writes this long). A longer one makes the whole header block an error.
inline constexpr std::size_t kMaxHeaderLine = 16 * 1024;

struct HeaderField {
  std::string_view name;  // as written, without trailing whitespace; compare case-insensitively
  std::string value;      // unfolded (each line break and the whitespace after it become one
                          // space), without leading or trailing whitespace
};

struct HeaderBlock {
  std::vector<HeaderField> fields;  // in order of appearance
  std::string_view body;            // what follows the empty line that ends the block
  bool ended = false;               // an empty line ended the block (else it ran to the end)
};

// Reads the header fields at the start of `text` up to the first empty line. A line that is
// neither a field ("name: value") nor a continuation (starts with space or tab) is skipped,
// so a stray "From " line or a continuation with nothing to continue does no harm. A line, or
// a field with its continuations, longer than kMaxHeaderLine is an error. `text_complete`
// false says `text` was cut off (a report truncated at kMaxDsnBytes, a part with no closing
// delimiter): then a last field not followed by another line may be cut and is dropped.
StatusOr<HeaderBlock> ReadHeaderBlock(std::string_view text, bool text_complete);

// The value of the first field called `name` (ASCII case-insensitive), or nullptr.
const std::string* FindField(const HeaderBlock& block, std::string_view name);

struct ContentType {
  std::string type;                                             // "type/subtype" in lower case
  std::vector<std::pair<std::string, std::string>> parameters;  // names lower case, values as
                                                                // given, quoting undone
  // The value of the first parameter called `name` (lower case), or nullptr.
  const std::string* Parameter(std::string_view name) const;
};

// Parses a Content-Type field value per RFC 2045 section 5.1: type and subtype tokens,
// parameters as token or quoted-string (backslash escapes undone), comments in parentheses
// (RFC 5322 section 3.2.2, nested) and whitespace anywhere between tokens. Unquoted values may
// also hold the characters real mailers leave unquoted ("/", "=", "?", ...). A parameter that
// does not parse is skipped up to the next ';'. nullopt if there is no "type/subtype".
std::optional<ContentType> ParseContentType(std::string_view value);

struct BodyPart {
  std::string_view text;  // the part: its header block and content, without the line end
                          // that belongs to the next delimiter (RFC 2046 section 5.1.1)
  bool complete = false;  // a delimiter ended it (false: the input ended first)
};

// Splits a multipart body at the delimiter lines "--" + `boundary`, which may be followed by
// spaces or tabs; "--" + `boundary` + "--" closes the body. The preamble before the first
// delimiter and the epilogue after the close are ignored; at most `max_parts` parts are
// returned (later ones are ignored). A line that only starts with the delimiter ("--" +
// boundary + "xyz", e.g. a nested part's boundary) is content, not a delimiter. Empty when
// there is no delimiter.
std::vector<BodyPart> SplitMultipart(std::string_view body, std::string_view boundary,
                                     std::size_t max_parts);

// Whether Content-Transfer-Encoding `encoding` is one DecodeTransferEncoding decodes (base64 or
// quoted-printable, any case); 7bit, 8bit, binary and unknown encodings are read as they are.
bool IsDecodable(std::string_view encoding);

// Decodes `content` per `encoding` (IsDecodable). Lenient as RFC 2045 asks of readers:
// base64 ignores characters outside its alphabet and stops at padding; quoted-printable keeps
// a malformed "=" sequence as it is and joins soft line breaks. Never longer than `content`.
std::string DecodeTransferEncoding(std::string_view content, std::string_view encoding);

// ASCII case-insensitive equality.
bool EqualsNoCase(std::string_view a, std::string_view b);

}  // namespace mailpulse::mime
