// ImapResponseParser: framing of RFC 3501 responses (lines and literals, section 4.3) with
// bounded buffering, and ParseImapResponse, which reads a framed response by the grammar of
// section 9. Every byte comes from an untrusted server, so every malformation is an error
// Status, never an assertion.
#include "probe/imap/imap_response.h"

#include <utility>

#include "probe/imap/imap_text.h"

namespace mailpulse {
namespace {

constexpr std::size_t kQuotedPrefix = 64;  // how much of a bad line an error quotes

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Quote(std::string_view text) {
  return "\"" + ImapPrintable(text, kQuotedPrefix) + "\"";
}

// The size of a literal announced at the end of `line` ("... {123}"), or nullopt. Servers
// never send the "{n+}" of RFC 7888, which is for clients.
std::optional<std::size_t> AnnouncedLiteral(std::string_view line) {
  if (line.empty() || line.back() != '}') return std::nullopt;
  const std::size_t open = line.rfind('{');
  if (open == std::string_view::npos || open + 2 > line.size() - 1) return std::nullopt;
  std::size_t n = 0;
  for (std::size_t i = open + 1; i + 1 < line.size(); ++i) {
    if (!IsDigit(line[i]) || i - open > 10) return std::nullopt;
    n = n * 10 + static_cast<std::size_t>(line[i] - '0');
  }
  return n;
}

bool IsAtomChar(unsigned char c) {
  return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

// Reads the values of one framed response: lines[i] ends in "{n}" for every i but the last,
// and literals[i] follows it.
class ValueReader {
 public:
  ValueReader(const std::vector<std::string>& lines, const std::vector<std::string>& literals,
              const ImapLimits& limits)
      : lines_(lines), literals_(literals), limits_(limits) {}

  bool AtEnd() const { return line_ + 1 >= lines_.size() && pos_ >= Line().size(); }
  bool AtLineEnd() const { return pos_ >= Line().size(); }
  bool SingleLine() const { return lines_.size() == 1; }
  char Peek() const { return AtLineEnd() ? '\0' : Line()[pos_]; }
  void Skip(std::size_t n) { pos_ += n; }
  std::string_view RestOfLine() {
    std::string_view rest = std::string_view(Line()).substr(std::min(pos_, Line().size()));
    pos_ = Line().size();
    return rest;
  }

  // One SP (more are tolerated) between values.
  Status Space() {
    if (Peek() != ' ') return Unexpected("a space");
    while (Peek() == ' ') ++pos_;
    return Status::Ok();
  }

  // An atom, with a section spec "[...]" kept inside it: BODY[HEADER.FIELDS (A B)]<0>.
  StatusOr<std::string> Atom() {
    const std::string_view line = Line();
    const std::size_t start = pos_;
    while (pos_ < line.size()) {
      const auto c = static_cast<unsigned char>(line[pos_]);
      if (c == '[') {
        const std::size_t close = line.find(']', pos_);
        if (close == std::string_view::npos) return Error("unterminated '[' in " + Quote(line));
        pos_ = close + 1;
      } else if (IsAtomChar(c)) {
        ++pos_;
      } else {
        break;
      }
    }
    if (pos_ == start) return Unexpected("an atom");
    return std::string(line.substr(start, pos_ - start));
  }

  StatusOr<ImapValue> Value(std::size_t depth) {
    ImapValue v;
    const char c = Peek();
    if (c == '(') {
      if (depth >= limits_.max_depth) {
        return Error("lists nested deeper than " + std::to_string(limits_.max_depth));
      }
      v.kind = ImapValue::Kind::kList;
      ++pos_;
      while (Peek() != ')') {
        if (!v.values.empty()) {
          if (Status s = Space(); !s.ok()) return s;
          if (Peek() == ')') break;
        }
        StatusOr<ImapValue> member = Value(depth + 1);
        if (!member.ok()) return member.status();
        v.values.push_back(std::move(*member));
      }
      ++pos_;
      return v;
    }
    v.kind = c == '"' || c == '{' ? ImapValue::Kind::kString : ImapValue::Kind::kAtom;
    StatusOr<std::string> text = c == '"' ? Quoted() : c == '{' ? Literal() : Atom();
    if (!text.ok()) return text.status();
    v.text = std::move(*text);
    return v;
  }

  // The rest of the response as values separated by spaces.
  StatusOr<std::vector<ImapValue>> Values() {
    std::vector<ImapValue> values;
    while (!AtEnd()) {
      if (Status s = Space(); !s.ok()) return s;
      if (AtEnd()) break;  // trailing spaces
      StatusOr<ImapValue> v = Value(0);
      if (!v.ok()) return v.status();
      values.push_back(std::move(*v));
    }
    return values;
  }

  Status Unexpected(std::string_view wanted) const {
    if (AtLineEnd())
      return Error("response ends where " + std::string(wanted) + " should be: " + Quote(Line()));
    return Error("expected " + std::string(wanted) + " at " + Quote(Line().substr(pos_)) + " in " +
                 Quote(Line()));
  }

 private:
  const std::string& Line() const { return lines_[line_]; }
  static Status Error(std::string message) { return Status::Error(std::move(message)); }

  // RFC 3501 section 9: quoted = DQUOTE *QUOTED-CHAR DQUOTE, only \" and \\ escaped.
  StatusOr<std::string> Quoted() {
    const std::string_view line = Line();
    std::string out;
    for (++pos_; pos_ < line.size(); ++pos_) {
      const char c = line[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c == '\\') {
        if (pos_ + 1 >= line.size() || (line[pos_ + 1] != '"' && line[pos_ + 1] != '\\')) {
          return Error("bad escape in quoted string " + Quote(line));
        }
        out += line[++pos_];
        continue;
      }
      out += c;
    }
    return Error("unterminated quoted string in " + Quote(line));
  }

  // "{n}" at the end of the line; the framing has put the n octets into literals_.
  StatusOr<std::string> Literal() {
    const std::string_view line = Line();
    if (line_ + 1 >= lines_.size() || !AnnouncedLiteral(line.substr(pos_)) ||
        line.find('}', pos_) + 1 != line.size()) {
      return Error("'{' that does not announce a literal at the end of " + Quote(line));
    }
    std::string out = literals_[line_];
    ++line_;
    pos_ = 0;
    return out;
  }

  const std::vector<std::string>& lines_;
  const std::vector<std::string>& literals_;
  const ImapLimits& limits_;
  std::size_t line_ = 0;
  std::size_t pos_ = 0;
};

bool IsStatusWord(std::string_view w) {
  return w == "OK" || w == "NO" || w == "BAD" || w == "PREAUTH" || w == "BYE";
}

// After the status word: [SP ["[" code "]"] [SP] text], all on one line (RFC 3501 7.1).
Status ReadStatusRest(ValueReader* in, ImapResponse* r) {
  if (!in->SingleLine()) return Status::Error("a literal in a " + r->status + " response");
  if (in->AtLineEnd()) return Status::Ok();  // Dovecot and others may omit the text
  if (Status s = in->Space(); !s.ok()) return s;
  std::string_view rest = in->RestOfLine();
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return Status::Error("unterminated response code in " + Quote(rest));
    }
    r->code = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  }
  r->text = std::string(rest);
  return Status::Ok();
}

StatusOr<ImapResponse> ReadUntagged(ValueReader* in, const std::string& first_line) {
  ImapResponse r;
  in->Skip(2);  // "* "
  StatusOr<std::string> word = in->Atom();
  if (!word.ok()) return Status::Error("malformed untagged response " + Quote(first_line));
  const std::string upper = ImapUpper(*word);
  if (IsStatusWord(upper)) {
    r.kind = ImapResponse::Kind::kStatus;
    r.status = upper;
    if (Status s = ReadStatusRest(in, &r); !s.ok()) return s;
    return r;
  }
  r.kind = ImapResponse::Kind::kData;
  r.keyword = upper;
  if (IsDigit(upper.front())) {  // "* 3 EXISTS", "* 3 FETCH (...)" (RFC 3501 7.3, 7.4)
    r.number = ImapValue{ImapValue::Kind::kAtom, *word, {}}.Number();
    if (!r.number) return Status::Error("bad message number in " + Quote(first_line));
    if (Status s = in->Space(); !s.ok()) return s;
    StatusOr<std::string> keyword = in->Atom();
    if (!keyword.ok()) return keyword.status();
    r.keyword = ImapUpper(*keyword);
  }
  StatusOr<std::vector<ImapValue>> values = in->Values();
  if (!values.ok()) return values.status();
  r.values = std::move(*values);
  return r;
}

}  // namespace

bool ImapValue::IsAtom(std::string_view name) const {
  return kind == Kind::kAtom && ImapUpper(text) == ImapUpper(name);
}

std::optional<std::uint32_t> ImapValue::Number() const {
  if (kind != Kind::kAtom || text.empty() || text.size() > 10) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : text) {
    if (!IsDigit(c)) return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (n > 0xffffffffULL) return std::nullopt;
  return static_cast<std::uint32_t>(n);
}

std::string ImapResponse::StatusText() const {
  std::string out = status;
  if (!code.empty()) out += " [" + code + "]";
  if (!text.empty()) out += " " + text;
  return ImapPrintable(out, 300);
}

StatusOr<ImapResponse> ParseImapResponse(const std::vector<std::string>& lines,
                                         const std::vector<std::string>& literals,
                                         const ImapLimits& limits) {
  if (lines.empty() || literals.size() + 1 != lines.size()) {
    return Status::Error("internal: a framed response needs one literal fewer than lines");
  }
  const std::string& first = lines.front();
  ValueReader in(lines, literals, limits);
  if (first.starts_with("+")) {  // RFC 3501 7.5: "+" SP (resp-text / base64)
    if (lines.size() != 1 || (first.size() > 1 && first[1] != ' ')) {
      return Status::Error("malformed continuation request " + Quote(first));
    }
    ImapResponse r;
    r.kind = ImapResponse::Kind::kContinuation;
    r.text = first.size() > 2 ? first.substr(2) : "";
    return r;
  }
  if (first.starts_with("* ")) return ReadUntagged(&in, first);
  // tag SP ("OK" / "NO" / "BAD") ...: a tag is astring-chars but '+' (RFC 3501 section 9).
  StatusOr<std::string> tag = in.Atom();
  if (!tag.ok() || tag->find('+') != std::string::npos || tag->find('[') != std::string::npos ||
      in.Peek() != ' ') {
    return Status::Error("malformed response line " + Quote(first));
  }
  in.Skip(1);
  StatusOr<std::string> word = in.Atom();
  const std::string upper = word.ok() ? ImapUpper(*word) : "";
  if (upper != "OK" && upper != "NO" && upper != "BAD") {
    return Status::Error("tagged response that is not OK, NO or BAD: " + Quote(first));
  }
  ImapResponse r;
  r.kind = ImapResponse::Kind::kStatus;
  r.tag = std::move(*tag);
  r.status = upper;
  if (Status s = ReadStatusRest(&in, &r); !s.ok()) return s;
  return r;
}

std::size_t ImapResponseParser::buffered() const {
  std::size_t n = line_.size();
  for (const std::string& l : pending_.lines) n += l.size();
  for (const std::string& l : pending_.literals) n += l.size();
  return n;
}

Status ImapResponseParser::Fail(Status status) {
  failed_ = true;
  error_ = std::move(status);
  return error_;
}

Status ImapResponseParser::Feed(std::string_view bytes, std::vector<ImapResponse>* responses) {
  if (failed_) return error_;
  while (!bytes.empty()) {
    if (in_literal_) {
      const std::size_t take = std::min(literal_left_, bytes.size());
      pending_.literals.back().append(bytes.substr(0, take));
      literal_left_ -= take;
      bytes.remove_prefix(take);
      in_literal_ = literal_left_ > 0;
      continue;
    }
    const std::size_t newline = bytes.find('\n');
    const std::string_view piece = bytes.substr(0, newline);
    // The bound holds before the line ends, so an endless line costs at most this much; one
    // byte more leaves room for the CR of a CRLF.
    if (line_.size() + piece.size() > limits_.max_line + 1) {
      line_.append(piece.substr(0, limits_.max_line + 1 - line_.size()));
      return Fail(Status::Error("response line longer than " + std::to_string(limits_.max_line) +
                                " octets: " + Quote(line_)));
    }
    line_.append(piece);
    if (newline == std::string_view::npos) break;
    bytes.remove_prefix(newline + 1);
    if (Status s = FinishLine(responses); !s.ok()) return Fail(s);
  }
  return Status::Ok();
}

// One complete line (without its LF) is in line_: either it announces a literal, and the
// response goes on after it, or it completes the response.
Status ImapResponseParser::FinishLine(std::vector<ImapResponse>* responses) {
  std::string line = std::move(line_);
  line_.clear();
  if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF, or a bare LF
  if (line.size() > limits_.max_line) {
    return Status::Error("response line longer than " + std::to_string(limits_.max_line) +
                         " octets: " + Quote(line));
  }
  pending_.size += line.size();
  const std::optional<std::size_t> literal = AnnouncedLiteral(line);
  if (literal && *literal > limits_.max_literal) {
    return Status::Error("literal of " + std::to_string(*literal) + " octets announced, over " +
                         "the limit of " + std::to_string(limits_.max_literal) + ": " +
                         Quote(line));
  }
  if (literal && pending_.literals.size() >= limits_.max_literals) {
    return Status::Error("response with more than " + std::to_string(limits_.max_literals) +
                         " literals");
  }
  if (pending_.size + literal.value_or(0) > limits_.max_response) {
    return Status::Error("response longer than " + std::to_string(limits_.max_response) +
                         " octets");
  }
  pending_.lines.push_back(std::move(line));
  if (literal) {
    pending_.size += *literal;
    pending_.literals.emplace_back().reserve(*literal);
    literal_left_ = *literal;
    in_literal_ = *literal > 0;
    return Status::Ok();
  }
  StatusOr<ImapResponse> r = ParseImapResponse(pending_.lines, pending_.literals, limits_);
  pending_ = Pending{};
  if (!r.ok()) return r.status();
  responses->push_back(std::move(*r));
  return Status::Ok();
}

}  // namespace mailpulse
