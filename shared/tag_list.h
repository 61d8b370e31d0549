// A `name=value; name=value` header value as an MTA hands it to a milter: the grammar of the
// probe token and the hop stamp (shared/probe_token.h), after DKIM's tag-list (RFC 6376 3.2).
// Forgiving where mail is: folded lines (CRLF or LF before a space or tab, RFC 5322 2.2.3),
// whitespace at either end and around ';' and '=', names in any case, one trailing ';'.
// Strict elsewhere: a value is one run of visible ASCII (no whitespace, no ';'; it may hold
// '=', as base64 does), a name is 1..32 letters, digits, '_' or '-', any other byte (a control
// character, a CR or LF that is not part of a fold, 8-bit) makes the whole text malformed, and
// so does text longer than kMaxTagListLength bytes (nothing of it is looked at). Pure and
// thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "shared/status.h"

namespace mailpulse {

inline constexpr std::size_t kMaxTagListLength = 1024;

struct Tag {
  std::string name;  // lower case
  std::string value;
};

// The tags of `text` in order, duplicates kept (the caller decides what a repeat means).
// Errors never quote the input; they name a field by its position ("field 2").
StatusOr<std::vector<Tag>> ParseTagList(std::string_view text);

// The value of the one tag named `name` (lower case) in `tags`: an error if it is missing or
// given more than once.
StatusOr<std::string_view> UniqueTag(const std::vector<Tag>& tags, std::string_view name);

}  // namespace mailpulse
