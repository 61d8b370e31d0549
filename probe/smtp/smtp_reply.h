// SmtpReply and ReplyParser: server replies of RFC 5321 section 4.2, parsed incrementally.
// The parser is sans-IO (bytes in, replies out), resumes at any byte split, accepts CRLF and
// bare LF line ends, and bounds what it buffers: a line longer than kMaxReplyLineLength or a
// reply of more than kMaxReplyLines lines is a protocol violation, as is anything that is not
// "DDD" followed by "-", " " or the end of the line, or a continuation line whose code differs.
// Not thread-safe; one parser per connection.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace mailpulse {

// RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers send a little more.
inline constexpr std::size_t kMaxReplyLineLength = 4096;
inline constexpr std::size_t kMaxReplyLines = 256;

struct SmtpReply {
  int code = 0;               // 200..599
  std::string enhanced_code;  // "5.1.1" when the first line starts with one (RFC 3463), else ""
  std::vector<std::string> lines;  // text after "DDD-" / "DDD ", one per line, enhanced code kept

  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }
  // "550 5.1.1 <x@y>: Recipient address rejected: ..." (lines joined with " / ").
  std::string ToString() const;
};

class ReplyParser {
 public:
  // Consumes bytes; each completed reply is appended to *replies. On a protocol violation it
  // returns an error describing it (with the offending line, escaped and shortened) and stays
  // failed.
  Status Feed(std::string_view bytes, std::vector<SmtpReply>* replies);
  bool failed() const { return failed_; }
  std::size_t buffered() const { return line_.size(); }

 private:
  Status FinishLine(std::vector<SmtpReply>* replies);

  std::string line_;
  SmtpReply pending_;
  bool in_reply_ = false;
  bool failed_ = false;
  Status error_;
};

}  // namespace mailpulse
