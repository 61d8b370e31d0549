// ReplyParser: incremental RFC 5321 4.2 reply parsing with bounded buffering, and
// SmtpReply::ToString. Every byte comes from an untrusted server, so every malformation is an
// error Status, never an assertion.
#include "probe/smtp/smtp_reply.h"

#include <cstdio>
#include <string>

namespace mailpulse {
namespace {

// How much of an offending line an error message quotes.
constexpr std::size_t kQuotedPrefix = 64;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// The line as a quoted, printable, shortened string for an error message: a hostile server
// must not be able to put control characters or megabytes into our logs.
std::string Quote(std::string_view line) {
  std::string out = "\"";
  for (std::size_t i = 0; i < line.size() && i < kQuotedPrefix; ++i) {
    const auto byte = static_cast<unsigned char>(line[i]);
    if (byte == '"' || byte == '\\') {
      out += '\\';
      out += line[i];
    } else if (byte >= 0x20 && byte < 0x7f) {
      out += line[i];
    } else {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    }
  }
  out += '"';
  if (line.size() > kQuotedPrefix) out += "...";
  return out;
}

// Digits of an enhanced status code part: 1 to max_digits digits, no sign.
std::size_t DigitRun(std::string_view text, std::size_t pos, std::size_t max_digits) {
  std::size_t n = 0;
  while (pos + n < text.size() && IsDigit(text[pos + n])) ++n;
  return n >= 1 && n <= max_digits ? n : 0;
}

// RFC 3463 section 2: class "." subject "." detail, class 2, 4 or 5, subject and detail of one
// to three digits, followed by a space or the end of the text. "" when the text has none.
std::string EnhancedCode(std::string_view text) {
  if (text.size() < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') || text[1] != '.') {
    return "";
  }
  const std::size_t subject = DigitRun(text, 2, 3);
  if (subject == 0 || 2 + subject >= text.size() || text[2 + subject] != '.') return "";
  const std::size_t detail_pos = 3 + subject;
  const std::size_t detail = DigitRun(text, detail_pos, 3);
  if (detail == 0) return "";
  const std::size_t end = detail_pos + detail;
  if (end < text.size() && text[end] != ' ') return "";
  return std::string(text.substr(0, end));
}

}  // namespace

std::string SmtpReply::ToString() const {
  std::string out = std::to_string(code);
  std::string joined;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) joined += " / ";
    joined += lines[i];
  }
  if (!joined.empty()) out += " " + joined;
  return out;
}

Status ReplyParser::Feed(std::string_view bytes, std::vector<SmtpReply>* replies) {
  if (failed_) return error_;
  while (!bytes.empty()) {
    const std::size_t newline = bytes.find('\n');
    const std::string_view piece = bytes.substr(0, newline);
    // The bound applies before the line ends, so an endless line costs at most this much; one
    // extra byte leaves room for the CR of a CRLF.
    if (line_.size() + piece.size() > kMaxReplyLineLength + 1) {
      line_.append(piece.substr(0, kMaxReplyLineLength + 1 - line_.size()));
      failed_ = true;
      error_ = Status::Error("reply line longer than " + std::to_string(kMaxReplyLineLength) +
                             " octets: " + Quote(line_));
      return error_;
    }
    line_.append(piece);
    if (newline == std::string_view::npos) break;
    bytes.remove_prefix(newline + 1);
    if (Status status = FinishLine(replies); !status.ok()) {
      failed_ = true;
      error_ = status;
      return error_;
    }
  }
  return Status::Ok();
}

// One complete line (without its LF) is in line_: validate it and add it to the pending reply.
Status ReplyParser::FinishLine(std::vector<SmtpReply>* replies) {
  std::string line = std::move(line_);
  line_.clear();
  if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF or bare LF
  if (line.size() > kMaxReplyLineLength) {
    return Status::Error("reply line longer than " + std::to_string(kMaxReplyLineLength) +
                         " octets: " + Quote(line));
  }
  // RFC 5321 4.2: "DDD" (first digit 2..5 here: a client never sees 1yz) then "-", " " or
  // nothing.
  if (line.size() < 3 || line[0] < '2' || line[0] > '5' || !IsDigit(line[1]) || !IsDigit(line[2]) ||
      (line.size() > 3 && line[3] != '-' && line[3] != ' ')) {
    return Status::Error("malformed reply line " + Quote(line));
  }
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  const bool continued = line.size() > 3 && line[3] == '-';
  std::string text = line.size() > 4 ? line.substr(4) : std::string();
  if (in_reply_ && code != pending_.code) {
    return Status::Error("reply code " + std::to_string(code) + " continues a " +
                         std::to_string(pending_.code) + " reply: " + Quote(line));
  }
  if (!in_reply_) {
    pending_ = SmtpReply{};
    pending_.code = code;
    pending_.enhanced_code = EnhancedCode(text);
    in_reply_ = true;
  }
  pending_.lines.push_back(std::move(text));
  if (!continued) {
    replies->push_back(std::move(pending_));
    pending_ = SmtpReply{};
    in_reply_ = false;
  } else if (pending_.lines.size() >= kMaxReplyLines) {
    return Status::Error("reply has more than " + std::to_string(kMaxReplyLines) + " lines");
  }
  return Status::Ok();
}

}  // namespace mailpulse
