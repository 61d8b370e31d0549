// ImapResponse and ImapResponseParser: the server side of RFC 3501 section 7 as data, parsed
// incrementally. The parser is sans-IO (bytes in, responses out) and resumes at any byte
// split. It frames a response — one line, or lines joined by literals "{n}" CRLF n-octets —
// and then reads it: a continuation request ("+ ..."), a status response (tagged or untagged
// OK, NO, BAD, PREAUTH, BYE with an optional [response code] and text) or untagged data
// ("* CAPABILITY ...", "* SEARCH 4 9", "* 3 FETCH (...)") as a tree of atoms, strings and
// parenthesized lists. Everything it buffers is bounded (ImapLimits): an over-long line, an
// over-long literal (refused as soon as it is announced), too many literals or too deep a
// nesting is an error, and so is every byte sequence the grammar does not allow. Errors
// quote the offending text escaped and shortened. Not thread-safe; one parser per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace mailpulse {

struct ImapLimits {
  std::size_t max_line = 16 * 1024;       // one line of a response, between literals
  std::size_t max_literal = 64 * 1024;    // one literal; what a probe fetches is a few headers
  std::size_t max_literals = 64;          // literals in one response
  std::size_t max_response = 256 * 1024;  // lines and literals of one response together
  std::size_t max_depth = 16;             // nesting of parenthesized lists
};

// One value of untagged data (RFC 3501 section 4): an atom (also numbers, NIL and
// "BODY[HEADER.FIELDS (A B)]<0>" section specs, kept whole), a string (quoted or literal,
// unescaped) or a parenthesized list.
struct ImapValue {
  enum class Kind { kAtom, kString, kList };
  Kind kind = Kind::kAtom;
  std::string text;               // atom or string contents
  std::vector<ImapValue> values;  // list members

  bool IsAtom(std::string_view name) const;  // an atom equal to `name`, ignoring case
  bool IsNil() const { return IsAtom("NIL"); }
  // The value as an unsigned 32-bit number (nz-number and 0), when it is an atom of digits.
  std::optional<std::uint32_t> Number() const;
};

struct ImapResponse {
  enum class Kind {
    kContinuation,  // "+ text": the server waits for more of the command
    kStatus,        // "* OK ...", "tag NO ...", "* BYE ...", "* PREAUTH ..."
    kData,          // "* CAPABILITY ...", "* SEARCH ...", "* 3 EXISTS", "* 3 FETCH (...)"
  };
  Kind kind = Kind::kData;
  std::string tag;     // kStatus: the command's tag, or "" for an untagged status response
  std::string status;  // kStatus: OK, NO, BAD, PREAUTH or BYE (upper case)
  std::string code;    // kStatus: inside "[...]" ("CAPABILITY IMAP4rev1 ...", "ALERT"), or ""
  std::string text;    // kStatus and kContinuation: the human-readable text
  // kData: "* 3 FETCH (...)" has number 3 and keyword FETCH; "* SEARCH 4 9" no number,
  // keyword SEARCH and values 4 9. The keyword is upper case.
  std::optional<std::uint32_t> number;
  std::string keyword;
  std::vector<ImapValue> values;

  bool tagged() const { return kind == Kind::kStatus && !tag.empty(); }
  // "NO [AUTHENTICATIONFAILED] Authentication failed." — what a failure report quotes,
  // made printable and shortened.
  std::string StatusText() const;
};

class ImapResponseParser {
 public:
  explicit ImapResponseParser(ImapLimits limits = {}) : limits_(limits) {}

  // Consumes bytes; each completed response is appended to *responses. On a protocol
  // violation it returns an error describing it and stays failed (responses completed
  // before the bad one are still appended).
  Status Feed(std::string_view bytes, std::vector<ImapResponse>* responses);
  bool failed() const { return failed_; }
  // Bytes of an unfinished response held back (0 between responses).
  std::size_t buffered() const;

 private:
  Status FinishLine(std::vector<ImapResponse>* responses);
  Status Fail(Status status);

  // A response in the making: lines[i] ended in a literal announcement when i + 1 < size,
  // and literals[i] is that literal.
  struct Pending {
    std::vector<std::string> lines;
    std::vector<std::string> literals;
    std::size_t size = 0;
  };

  ImapLimits limits_;
  std::string line_;
  Pending pending_;
  std::size_t literal_left_ = 0;  // octets of the current literal still to come
  bool in_literal_ = false;
  bool failed_ = false;
  Status error_;
};

// Reads one framed response (exposed for tests): `lines` and `literals` as the parser holds
// them, lines without their CRLF.
StatusOr<ImapResponse> ParseImapResponse(const std::vector<std::string>& lines,
                                         const std::vector<std::string>& literals,
                                         const ImapLimits& limits);

}  // namespace mailpulse
