// The two clocks every daemon reads: wall-clock Unix time in microseconds (event and log
// timestamps, probe tokens) and monotonic seconds (deadlines, rates). Inline and thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

namespace mailpulse {

inline std::int64_t UnixMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline double MonotonicSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace mailpulse
