// Strings, base64, header fields and the probe id for the IMAP client (see imap_text.h).
#include "probe/imap/imap_text.h"

#include <cstdio>

namespace mailpulse {
namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (IsWsp(s.front()) || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (IsWsp(s.back()) || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

bool IsHex(char c) { return (c >= '0' && c <= '9') || (Lower(c) >= 'a' && Lower(c) <= 'f'); }

}  // namespace

std::string ImapPrintable(std::string_view s, std::size_t max_length) {
  std::string out;
  for (const char ch : s) {
    if (out.size() >= max_length) {
      out += "...";
      break;
    }
    const auto byte = static_cast<unsigned char>(ch);
    if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
      out += ch;
    } else {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    }
  }
  return out;
}

std::string ImapUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

std::string ImapLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

std::vector<std::string_view> ImapWords(std::string_view text) {
  std::vector<std::string_view> words;
  while (!text.empty()) {
    const std::size_t space = text.find(' ');
    if (space != 0) words.push_back(text.substr(0, space));
    if (space == std::string_view::npos) break;
    text.remove_prefix(space + 1);
  }
  return words;
}

std::string ImapUidSet(const std::vector<std::uint32_t>& uids) {
  std::string out;
  for (const std::uint32_t uid : uids) out += (out.empty() ? "" : ",") + std::to_string(uid);
  return out;
}

std::string ImapBase64Encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    unsigned v = 0;
    for (std::size_t j = 0; j < 3; ++j) {
      v = (v << 8) | (j < n ? static_cast<unsigned char>(bytes[i + j]) : 0u);
    }
    for (std::size_t j = 0; j < 4; ++j) {
      out += j <= n ? kAlphabet[(v >> (18 - 6 * j)) & 0x3f] : '=';
    }
  }
  return out;
}

bool IsImapQuotable(std::string_view s) {
  for (const char c : s) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte == 0 || byte == '\r' || byte == '\n' || byte >= 0x80) return false;
  }
  return true;
}

std::string QuoteImapString(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

std::vector<HeaderField> ParseHeaderFields(std::string_view header) {
  std::vector<HeaderField> fields;
  bool in_field = false;  // whether a continuation line belongs to fields.back()
  while (!header.empty()) {
    const std::size_t newline = header.find('\n');
    std::string_view line = header.substr(0, newline);
    header.remove_prefix(newline == std::string_view::npos ? header.size() : newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // the end of the header section
    if (IsWsp(line.front())) {
      // RFC 5322 2.2.3: unfolding removes the CRLF, the whitespace stays.
      if (in_field) fields.back().value += line;
      continue;
    }
    const std::size_t colon = line.find(':');
    in_field = colon != std::string_view::npos && colon > 0 && !IsWsp(line[colon - 1]);
    if (!in_field) continue;
    fields.push_back({std::string(line.substr(0, colon)), std::string(line.substr(colon + 1))});
  }
  for (HeaderField& f : fields) f.value = std::string(Trim(f.value));
  return fields;
}

bool HeaderNameIs(const HeaderField& field, std::string_view name) {
  return EqualsIgnoringCase(field.name, name);
}

bool IsProbeId(std::string_view id) {
  if (id.size() != 32) return false;
  for (const char c : id) {
    if (!IsHex(c)) return false;
  }
  return true;
}

std::optional<std::string> ProbeIdOfHeader(std::string_view value) {
  std::optional<std::string> id;
  while (true) {
    const std::size_t semicolon = value.find(';');
    const std::string_view field = value.substr(0, semicolon);
    const std::size_t equals = field.find('=');
    if (equals != std::string_view::npos &&
        EqualsIgnoringCase(Trim(field.substr(0, equals)), "id")) {
      if (id) return std::nullopt;  // twice: ambiguous, so no id at all
      id.emplace();
      for (const char c : Trim(field.substr(equals + 1))) id->push_back(Lower(c));
      if (id->empty()) return std::nullopt;
    }
    if (semicolon == std::string_view::npos) break;
    value.remove_prefix(semicolon + 1);
  }
  return id;
}

}  // namespace mailpulse
