// Base64, dot-stuffing, EHLO capabilities and queue ids for SmtpSession.
#include "probe/smtp/smtp_text.h"

#include <algorithm>
#include <charconv>
#include <vector>

namespace mailpulse {
namespace {

// A queue id longer than this is not one (Postfix long ids are about 20 characters).
constexpr std::size_t kMaxQueueIdLength = 64;

char Upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }
char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string ToUpper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), Upper);
  return out;
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), Lower);
  return out;
}

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::vector<std::string_view> Words(std::string_view line) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && IsSpace(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !IsSpace(line[i])) ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

void AddMechanism(std::string_view mechanism, Capabilities* caps) {
  if (mechanism.empty()) return;
  std::string upper = ToUpper(mechanism);
  std::vector<std::string>& list = caps->auth_mechanisms;
  if (std::find(list.begin(), list.end(), upper) == list.end()) list.push_back(std::move(upper));
}

void ParseSize(std::string_view value, Capabilities* caps) {
  unsigned long long size = 0;
  const char* end = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(value.data(), end, size);
  if (ec == std::errc() && ptr == end) caps->size = size;
}

// The id at the start of `text`: up to the next space, without surrounding "<>" or trailing
// punctuation; "" unless it looks like an id (letters, digits, "-", "_", ".").
std::string IdToken(std::string_view text) {
  const std::size_t space = text.find_first_of(" \t");
  std::string_view token = text.substr(0, space);
  if (!token.empty() && token.front() == '<') token.remove_prefix(1);
  while (!token.empty() && (token.back() == '>' || token.back() == '.' || token.back() == ',' ||
                            token.back() == ';' || token.back() == ')')) {
    token.remove_suffix(1);
  }
  if (token.empty() || token.size() > kMaxQueueIdLength) return "";
  const bool valid = std::all_of(token.begin(), token.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '_' || c == '.';
  });
  return valid ? std::string(token) : "";
}

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned n = static_cast<unsigned char>(bytes[i]) << 16 |
                       static_cast<unsigned char>(bytes[i + 1]) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[n >> 18 & 63];
    out += kAlphabet[n >> 12 & 63];
    out += kAlphabet[n >> 6 & 63];
    out += kAlphabet[n & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    unsigned n = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kAlphabet[n >> 18 & 63];
    out += kAlphabet[n >> 12 & 63];
    out += rest == 2 ? kAlphabet[n >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

std::string DotStuff(std::string_view message) {
  std::string out;
  out.reserve(message.size() + message.size() / 16 + 2);
  while (!message.empty()) {
    const std::size_t newline = message.find('\n');
    std::string_view line = message.substr(0, newline);
    message.remove_prefix(newline == std::string_view::npos ? message.size() : newline + 1);
    if (newline != std::string_view::npos && !line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (!line.empty() && line.front() == '.') out += '.';
    out.append(line);
    out += "\r\n";
  }
  return out;
}

Capabilities ParseEhloCapabilities(const SmtpReply& reply) {
  Capabilities caps;
  caps.esmtp = true;
  // The first line is the server's name and greeting; each further line one keyword.
  for (std::size_t i = 1; i < reply.lines.size(); ++i) {
    const std::vector<std::string_view> words = Words(reply.lines[i]);
    if (words.empty()) continue;
    const std::string keyword = ToUpper(words[0]);
    if (keyword == "STARTTLS") {
      caps.starttls = true;
    } else if (keyword == "PIPELINING") {
      caps.pipelining = true;
    } else if (keyword == "8BITMIME") {
      caps.eight_bit_mime = true;
    } else if (keyword == "SMTPUTF8") {
      caps.smtputf8 = true;
    } else if (keyword == "SIZE" && words.size() > 1) {
      ParseSize(words[1], &caps);
    } else if (keyword == "AUTH" || keyword.starts_with("AUTH=")) {
      // "AUTH=PLAIN LOGIN": the syntax of drafts before RFC 2554, which Postfix still offers
      // for old clients (broken_sasl_auth_clients).
      if (keyword.size() > 5) AddMechanism(keyword.substr(5), &caps);
      for (std::size_t w = 1; w < words.size(); ++w) AddMechanism(words[w], &caps);
    }
  }
  return caps;
}

std::string QueueIdFromReply(const SmtpReply& reply) {
  if (reply.lines.empty()) return "";
  std::string_view text = reply.lines[0];
  text.remove_prefix(std::min(text.size(), reply.enhanced_code.size()));
  while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
  const std::string lower = ToLower(text);
  if (std::size_t pos = lower.find("queued as "); pos != std::string::npos) {
    return IdToken(text.substr(pos + 10));  // Postfix
  }
  for (std::size_t pos = lower.find("id="); pos != std::string::npos;
       pos = lower.find("id=", pos + 1)) {
    if (pos == 0 || IsSpace(lower[pos - 1])) return IdToken(text.substr(pos + 3));  // Exim
  }
  if (lower.find(" message accepted for delivery") != std::string::npos) {
    return IdToken(text);  // Sendmail: the id comes first
  }
  return "";
}

std::string Printable(std::string_view s, std::size_t max_length, std::string_view also_escape) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max_length) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f && also_escape.find(static_cast<char>(c)) == std::string_view::npos) {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

}  // namespace mailpulse
