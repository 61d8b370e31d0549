// UTF-8 well-formedness, for text from peers that must go into a proto3 string, a metric label
// or a log line as it is.
#pragma once

#include <cstddef>
#include <string_view>

namespace mailpulse {

// Length of the well-formed UTF-8 sequence at the start of `s` (Unicode table 3-7), or 0 when
// it does not start with one (or is empty).
std::size_t Utf8SequenceLength(std::string_view s);

}  // namespace mailpulse
