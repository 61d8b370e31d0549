#include "milter/core/mime_reader.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>

namespace mailpulse::mime {

namespace {

constexpr std::string_view kTooLong = "header line longer than 16384 bytes";

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

char ToLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ToLower(c);
  return out;
}

std::string_view TrimWsp(std::string_view s) {
  while (!s.empty() && IsWsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWsp(s.back())) s.remove_suffix(1);
  return s;
}

// One line of `text` starting at `pos`: its text without the line end (CRLF or LF), and where
// the next line starts. The last line may have no line end.
struct Line {
  std::string_view text;
  std::size_t next;
};

Line LineAt(std::string_view text, std::size_t pos) {
  const std::size_t nl = text.find('\n', pos);
  if (nl == std::string_view::npos) return {text.substr(pos), text.size()};
  std::size_t end = nl;
  if (end > pos && text[end - 1] == '\r') --end;
  return {text.substr(pos, end - pos), nl + 1};
}

// RFC 5322 section 3.6.8: a field name is printable ASCII except ':'. Whitespace before the
// colon is obsolete syntax (section 4.5) that is still seen, so it is allowed and dropped.
bool StartField(std::string_view line, std::vector<HeaderField>* fields) {
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view name = line.substr(0, colon);
  while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
  if (name.empty()) return false;
  for (char c : name) {
    if (c <= ' ' || c >= '\x7f') return false;
  }
  fields->push_back({name, std::string(TrimWsp(line.substr(colon + 1)))});
  return true;
}

}  // namespace

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ToLower(a[i]) != ToLower(b[i])) return false;
  }
  return true;
}

StatusOr<HeaderBlock> ReadHeaderBlock(std::string_view text, bool text_complete) {
  HeaderBlock block;
  bool in_field = false;  // the last line read belongs to the last field in `block`
  std::size_t pos = 0;
  while (pos < text.size()) {
    const Line line = LineAt(text, pos);
    if (line.text.size() > kMaxHeaderLine) return Status::Error(std::string(kTooLong));
    pos = line.next;
    if (line.text.empty()) {
      block.body = text.substr(pos);
      block.ended = true;
      return block;
    }
    if (!IsWsp(line.text.front())) {
      in_field = StartField(line.text, &block.fields);
      continue;
    }
    // RFC 5322 section 2.2.3: unfolding removes the line break; the whitespace that follows
    // is collapsed to one space so that the value reads as one line.
    const std::string_view more = TrimWsp(line.text);
    if (!in_field || more.empty()) continue;
    std::string& value = block.fields.back().value;
    if (value.size() + 1 + more.size() > kMaxHeaderLine) {
      return Status::Error(std::string(kTooLong));
    }
    if (!value.empty()) value.push_back(' ');
    value.append(more);
  }
  // Cut off without an empty line: the next line, lost, might have continued the last field.
  if (!text_complete && in_field) block.fields.pop_back();
  return block;
}

const std::string* FindField(const HeaderBlock& block, std::string_view name) {
  for (const HeaderField& field : block.fields) {
    if (EqualsNoCase(field.name, name)) return &field.value;
  }
  return nullptr;
}

namespace {

// RFC 2045 section 5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>.
bool IsTokenChar(char c) {
  if (c <= ' ' || c >= '\x7f') return false;
  return std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}

// An unquoted parameter value as mailers really write it: a token, or with the tspecials that
// cannot end or open anything here ("boundary=abc/def=" is common), and 8-bit bytes.
bool IsLooseValueChar(char c) {
  if ((c >= '\0' && c <= ' ') || c == '\x7f') return false;
  return std::string_view(";\"()\\").find(c) == std::string_view::npos;
}

// The lexical layer of RFC 5322 section 3.2 that a Content-Type value needs.
class ValueLexer {
 public:
  explicit ValueLexer(std::string_view text) : text_(text) {}

  bool AtEnd() const { return pos_ >= text_.size(); }
  bool Consume(char c) {
    if (AtEnd() || text_[pos_] != c) return false;
    ++pos_;
    return true;
  }

  // Whitespace, line breaks (folding) and comments, which nest and may hold quoted pairs
  // (section 3.2.2). An unclosed comment runs to the end.
  void SkipCfws() {
    int depth = 0;
    while (!AtEnd()) {
      const char c = text_[pos_];
      if (depth > 0 && c == '\\') {
        pos_ = std::min(pos_ + 2, text_.size());  // a quoted pair, maybe cut after its '\'
        continue;
      }
      if (c == '(') {
        ++depth;
      } else if (c == ')' && depth > 0) {
        --depth;
      } else if (depth == 0 && !IsWsp(c) && c != '\r' && c != '\n') {
        return;
      }
      ++pos_;
    }
  }

  std::string_view Token(bool (*is_char)(char)) {
    const std::size_t start = pos_;
    while (!AtEnd() && is_char(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  // A quoted-string after its opening quote (section 3.2.4): quoted pairs undone, line
  // breaks removed (unfolding). An unclosed one runs to the end.
  std::string QuotedRest() {
    std::string out;
    while (!AtEnd()) {
      const char c = text_[pos_++];
      if (c == '"') break;
      if (c == '\\' && !AtEnd()) {
        out.push_back(text_[pos_++]);
      } else if (c != '\r' && c != '\n') {
        out.push_back(c);
      }
    }
    return out;
  }

  // Moves to the next `c` (or the end) without consuming it.
  void SkipTo(char c) { pos_ = std::min(text_.find(c, pos_), text_.size()); }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace

std::optional<ContentType> ParseContentType(std::string_view value) {
  ValueLexer lex(value);
  lex.SkipCfws();
  const std::string_view type = lex.Token(IsTokenChar);
  lex.SkipCfws();
  if (type.empty() || !lex.Consume('/')) return std::nullopt;
  lex.SkipCfws();
  const std::string_view subtype = lex.Token(IsTokenChar);
  if (subtype.empty()) return std::nullopt;
  ContentType result;
  result.type = Lower(type) + "/" + Lower(subtype);
  while (true) {
    lex.SkipCfws();
    if (lex.AtEnd()) break;
    if (!lex.Consume(';')) {  // junk where a ';' belongs: resynchronise at the next one
      lex.SkipTo(';');
      continue;
    }
    lex.SkipCfws();
    const std::string_view name = lex.Token(IsTokenChar);
    lex.SkipCfws();
    if (name.empty() || !lex.Consume('=')) continue;
    lex.SkipCfws();
    std::string parameter_value =
        lex.Consume('"') ? lex.QuotedRest() : std::string(lex.Token(IsLooseValueChar));
    result.parameters.emplace_back(Lower(name), std::move(parameter_value));
  }
  return result;
}

const std::string* ContentType::Parameter(std::string_view name) const {
  for (const auto& [key, value] : parameters) {
    if (key == name) return &value;
  }
  return nullptr;
}

namespace {

// The mechanism of a Content-Transfer-Encoding value, without a trailing comment.
std::string_view EncodingMechanism(std::string_view encoding) {
  encoding = TrimWsp(encoding);
  return encoding.substr(0, encoding.find_first_of(" \t(;"));
}

}  // namespace

bool IsDecodable(std::string_view encoding) {
  const std::string_view mechanism = EncodingMechanism(encoding);
  return EqualsNoCase(mechanism, "base64") || EqualsNoCase(mechanism, "quoted-printable");
}

namespace {

// RFC 2045 section 6.8, the base64 alphabet; -1 for anything else.
int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// RFC 2045 section 6.8: characters outside the alphabet (line breaks above all) are ignored;
// '=' is padding and ends the data.
std::string DecodeBase64(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3 + 3);
  std::uint32_t bits = 0;
  int count = 0;
  for (char c : in) {
    if (c == '=') break;
    const int v = Base64Value(c);
    if (v < 0) continue;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = ToLower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// RFC 2045 section 6.7: "=XX" is a byte, "=" at the end of a line (trailing whitespace
// allowed) a soft line break; any other "=" is kept as it is (rule 6.7 (1), "robust").
std::string DecodeQuotedPrintable(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '=') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 < in.size() && HexValue(in[i + 1]) >= 0 && HexValue(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
      i += 2;
      continue;
    }
    std::size_t j = i + 1;
    while (j < in.size() && IsWsp(in[j])) ++j;
    if (j < in.size() && in[j] == '\r') ++j;
    if (j == in.size() || in[j] == '\n') {
      i = j;  // soft line break: drop "=", the whitespace and the line end
      continue;
    }
    out.push_back('=');
  }
  return out;
}

}  // namespace

std::string DecodeTransferEncoding(std::string_view content, std::string_view encoding) {
  const std::string_view mechanism = EncodingMechanism(encoding);
  if (EqualsNoCase(mechanism, "base64")) return DecodeBase64(content);
  if (EqualsNoCase(mechanism, "quoted-printable")) return DecodeQuotedPrintable(content);
  return std::string(content);
}

std::vector<BodyPart> SplitMultipart(std::string_view body, std::string_view boundary,
                                     std::size_t max_parts) {
  enum class Delimiter { kNone, kOpen, kClose };
  // RFC 2046 section 5.1.1: "--" boundary, then transport padding (whitespace) or, for the
  // close delimiter, "--". Comparing at most boundary.size() + 2 bytes per line keeps the
  // whole split linear.
  const auto classify = [boundary](std::string_view line) {
    if (line.size() < boundary.size() + 2 || line[0] != '-' || line[1] != '-' ||
        line.substr(2, boundary.size()) != boundary) {
      return Delimiter::kNone;
    }
    const std::string_view rest = line.substr(2 + boundary.size());
    if (rest.substr(0, 2) == "--") return Delimiter::kClose;
    for (char c : rest) {
      if (!IsWsp(c) && c != '\r') return Delimiter::kNone;
    }
    return Delimiter::kOpen;
  };

  std::vector<BodyPart> parts;
  if (boundary.empty() || max_parts == 0) return parts;
  std::optional<std::size_t> part_start;
  std::size_t pos = 0;
  while (pos < body.size()) {
    const std::size_t line_start = pos;
    const Line line = LineAt(body, pos);
    pos = line.next;
    const Delimiter kind = classify(line.text);
    if (kind == Delimiter::kNone) continue;
    if (part_start) {
      // The line end before a delimiter belongs to the delimiter.
      std::size_t end = line_start;
      if (end > *part_start) --end;  // the '\n' that ended the previous line
      if (end > *part_start && body[end - 1] == '\r') --end;
      parts.push_back({body.substr(*part_start, end - *part_start), true});
      if (parts.size() == max_parts) return parts;
    }
    if (kind == Delimiter::kClose) return parts;
    part_start = pos;
  }
  if (part_start) parts.push_back({body.substr(*part_start), false});
  return parts;
}

}  // namespace mailpulse::mime
