#include "shared/endpoint.h"

#include <sys/un.h>

#include <charconv>

namespace mailpulse {
namespace {

StatusOr<std::uint16_t> ParsePort(std::string_view text, std::string_view whole) {
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || value == 0 ||
      value > 65535) {
    return Status::Error("'" + std::string(whole) + "': bad port '" + std::string(text) + "'");
  }
  return static_cast<std::uint16_t>(value);
}

StatusOr<Endpoint> UnixEndpoint(std::string_view path, std::string_view whole) {
  if (path.empty() || path.front() != '/') {
    return Status::Error("'" + std::string(whole) + "': unix socket path must be absolute");
  }
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Status::Error("'" + std::string(whole) + "': unix socket path longer than " +
                         std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
  }
  Endpoint e;
  e.kind = Endpoint::Kind::kUnix;
  e.path = std::string(path);
  return e;
}

}  // namespace

std::string Endpoint::ToString() const {
  if (kind == Kind::kUnix) return "unix:" + path;
  const std::string prefix = tls ? "tls:" : "";
  if (host.find(':') != std::string::npos) {
    return prefix + "[" + host + "]:" + std::to_string(port);
  }
  return prefix + host + ":" + std::to_string(port);
}

StatusOr<Endpoint> ParseEndpoint(std::string_view text) {
  if (text.substr(0, 5) == "unix:") return UnixEndpoint(text.substr(5), text);
  const bool tls = text.substr(0, 4) == "tls:";
  std::string_view rest = tls ? text.substr(4) : text;
  if (rest.substr(0, 5) == "inet:") rest = rest.substr(5);
  Endpoint e;
  e.tls = tls;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return Status::Error("'" + std::string(text) + "': expected [IPV6]:PORT");
    }
    e.host = std::string(rest.substr(1, close - 1));
    port_text = rest.substr(close + 2);
  } else {
    const std::size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return Status::Error("'" + std::string(text) + "': expected HOST:PORT or unix:/path");
    }
    e.host = std::string(rest.substr(0, colon));
    if (e.host.find(':') != std::string::npos) {
      return Status::Error("'" + std::string(text) + "': write IPv6 addresses as [ADDR]:PORT");
    }
    port_text = rest.substr(colon + 1);
  }
  StatusOr<std::uint16_t> port = ParsePort(port_text, text);
  if (!port.ok()) return port.status();
  e.port = *port;
  return e;
}

StatusOr<Endpoint> ParseMilterSocketSpec(std::string_view text) {
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Status::Error("'" + std::string(text) +
                         "': expected unix:/path, inet:PORT@HOST or inet6:PORT@HOST");
  }
  const std::string_view proto = text.substr(0, colon);
  const std::string_view rest = text.substr(colon + 1);
  if (proto == "unix" || proto == "local") return UnixEndpoint(rest, text);
  if (proto != "inet" && proto != "inet6") {
    return Status::Error("'" + std::string(text) + "': unknown socket type '" + std::string(proto) +
                         "'");
  }
  Endpoint e;
  const std::size_t at = rest.find('@');
  StatusOr<std::uint16_t> port = ParsePort(rest.substr(0, at), text);
  if (!port.ok()) {
    return Status::Error(port.status().message() + " (libmilter writes " + std::string(proto) +
                         ":PORT@HOST; Postfix's inet:HOST:PORT spelling goes in main.cf)");
  }
  e.port = *port;
  if (at != std::string_view::npos) {
    std::string_view host = rest.substr(at + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    e.host = std::string(host);
  }
  return e;
}

}  // namespace mailpulse
