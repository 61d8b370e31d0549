#include "shared/tag_list.h"

#include <utility>

namespace mailpulse {
namespace {

constexpr std::size_t kMaxNameLength = 32;

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view TrimWsp(std::string_view s) {
  while (!s.empty() && IsWsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsWsp(s.back())) s.remove_suffix(1);
  return s;
}

// `text` with each fold (CRLF or LF followed by a space or tab) reduced to that space or tab,
// and line ends at either end dropped. Any other CR or LF is left in place, and so refused by
// the caller: a line end that is not a fold would end the header.
std::string Unfold(std::string_view text) {
  auto is_eol = [](char c) { return c == '\r' || c == '\n'; };
  while (!text.empty() && (IsWsp(text.front()) || is_eol(text.front()))) text.remove_prefix(1);
  while (!text.empty() && (IsWsp(text.back()) || is_eol(text.back()))) text.remove_suffix(1);
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r' && i + 2 < text.size() && text[i + 1] == '\n' && IsWsp(text[i + 2])) {
      ++i;  // the LF is skipped next
      continue;
    }
    if (text[i] == '\n' && i + 1 < text.size() && IsWsp(text[i + 1])) continue;
    out += text[i];
  }
  return out;
}

std::string FieldName(std::size_t index) { return "field " + std::to_string(index + 1); }

// One "name = value" between semicolons, already trimmed and not empty.
StatusOr<Tag> ParseTag(std::string_view field, std::size_t index) {
  const std::size_t eq = field.find('=');
  if (eq == std::string_view::npos) return Status::Error(FieldName(index) + " has no '='");
  const std::string_view name = TrimWsp(field.substr(0, eq));
  const std::string_view value = TrimWsp(field.substr(eq + 1));
  if (name.empty() || name.size() > kMaxNameLength) {
    return Status::Error(FieldName(index) + " has no name or a name over 32 characters");
  }
  Tag tag;
  for (char c : name) {
    if (!IsNameChar(c)) return Status::Error(FieldName(index) + " has a bad name");
    tag.name += Lower(c);
  }
  for (char c : value) {
    if (c <= ' ') return Status::Error(FieldName(index) + " has whitespace in its value");
  }
  tag.value = std::string(value);
  return tag;
}

}  // namespace

StatusOr<std::vector<Tag>> ParseTagList(std::string_view text) {
  if (text.size() > kMaxTagListLength) {
    return Status::Error("is longer than " + std::to_string(kMaxTagListLength) + " bytes");
  }
  const std::string unfolded = Unfold(text);
  for (char c : unfolded) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\t') || byte >= 0x7f) {
      return Status::Error(
          "holds a control character, a line end that is not a fold, or a "
          "byte that is not ASCII");
    }
  }
  if (unfolded.empty()) return Status::Error("is empty");
  std::vector<Tag> tags;
  std::string_view rest = unfolded;
  for (std::size_t index = 0;; ++index) {
    const std::size_t semicolon = rest.find(';');
    const std::string_view field = TrimWsp(rest.substr(0, semicolon));
    const bool last = semicolon == std::string_view::npos;
    if (field.empty()) {
      // Only the one after a final ';' may be empty ("a=1; b=2;").
      if (last && index > 0) break;
      return Status::Error(FieldName(index) + " is empty");
    }
    StatusOr<Tag> tag = ParseTag(field, index);
    if (!tag.ok()) return tag.status();
    tags.push_back(std::move(*tag));
    if (last) break;
    rest.remove_prefix(semicolon + 1);
  }
  return tags;
}

StatusOr<std::string_view> UniqueTag(const std::vector<Tag>& tags, std::string_view name) {
  const Tag* found = nullptr;
  for (const Tag& tag : tags) {
    if (tag.name != name) continue;
    if (found != nullptr) {
      return Status::Error("field '" + std::string(name) + "' is given more than once");
    }
    found = &tag;
  }
  if (found == nullptr) return Status::Error("lacks the field '" + std::string(name) + "'");
  return std::string_view{found->value};
}

}  // namespace mailpulse
