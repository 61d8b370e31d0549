// Endpoint: where a socket lives, parsed from the spellings operators already use.
// Pure string handling; no socket is touched. Thread-compatible value type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shared/status.h"

namespace mailpulse {

struct Endpoint {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kTcp;
  std::string path;  // kUnix
  std::string host;  // kTcp: an address or name, IPv6 without brackets; empty means any
  std::uint16_t port = 0;
  bool tls = false;  // kTcp written "tls:HOST:PORT": the connection speaks TLS

  // "unix:/path", "HOST:PORT" ("[v6]:PORT" for IPv6) or "tls:HOST:PORT".
  std::string ToString() const;
};

// "unix:/path", "inet:HOST:PORT" (Postfix style), "HOST:PORT", "[v6]:PORT", or either TCP
// form after "tls:" for a TLS connection.
StatusOr<Endpoint> ParseEndpoint(std::string_view text);

// libmilter style: "unix:/path", "local:/path", "inet:PORT@HOST", "inet6:PORT@HOST",
// "inet:PORT" (all addresses). Unix socket paths must be absolute and fit sun_path.
StatusOr<Endpoint> ParseMilterSocketSpec(std::string_view text);

}  // namespace mailpulse
