#include "probe/address_lookup.h"

#include <arpa/inet.h>
#include <event2/util.h>
#include <netinet/in.h>

#include <cstring>
#include <exception>
#include <memory>
#include <utility>

#include "shared/logging.h"

namespace mailpulse {
namespace {

// A hostile or broken answer with hundreds of addresses would otherwise mean as many connect
// attempts; real mail hosts publish a handful.
constexpr std::size_t kMaxAddresses = 16;

struct AddrInfoDeleter {
  void operator()(evutil_addrinfo* a) const noexcept { evutil_freeaddrinfo(a); }
};

}  // namespace

std::string SocketAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = "?";
  if (family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    evutil_inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
  evutil_inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
  return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6->sin6_port));
}

std::optional<SocketAddress> ParseLiteralAddress(const std::string& host, std::uint16_t port) {
  SocketAddress a;
  auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (evutil_inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    a.length = sizeof(sockaddr_in);
    return a;
  }
  if (evutil_inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    a.length = sizeof(sockaddr_in6);
    return a;
  }
  return std::nullopt;
}

bool FamilyAllowed(AddressFamily want, int family) {
  return want == AddressFamily::kAny || (want == AddressFamily::kIpv4 && family == AF_INET) ||
         (want == AddressFamily::kIpv6 && family == AF_INET6);
}

AddressLookup::AddressLookup(evdns_base* dns, std::string host, std::uint16_t port,
                             AddressFamily family, Done done)
    : dns_(dns), host_(std::move(host)), port_(port), family_(family), done_(std::move(done)) {}

AddressLookup::~AddressLookup() {
  if (pending_ == nullptr) return;
  Pending* pending = std::exchange(pending_, nullptr);
  pending->owner = nullptr;
  // evdns then calls OnAnswer with EVUTIL_EAI_CANCEL, which frees `pending`.
  if (pending->request != nullptr) evdns_getaddrinfo_cancel(pending->request);
}

void AddressLookup::Start() {
  evutil_addrinfo hints{};
  hints.ai_family = family_ == AddressFamily::kIpv4   ? AF_INET
                    : family_ == AddressFamily::kIpv6 ? AF_INET6
                                                      : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  auto pending = std::make_unique<Pending>();
  pending->owner = this;
  pending_ = pending.get();
  // Hand-off: OnAnswer reclaims `pending`. It may run before evdns_getaddrinfo returns; then
  // pending_ is already null here (and `this` may be gone: nothing below may touch it then).
  Pending* raw = pending.release();
  evdns_getaddrinfo_request* request = evdns_getaddrinfo(
      dns_, host_.c_str(), std::to_string(port_).c_str(), &hints, &AddressLookup::OnAnswer, raw);
  if (request != nullptr) raw->request = request;  // non-null only while still in flight
}

void AddressLookup::OnAnswer(int error, evutil_addrinfo* answers, void* arg) noexcept {
  std::unique_ptr<Pending> pending(static_cast<Pending*>(arg));
  std::unique_ptr<evutil_addrinfo, AddrInfoDeleter> owned(answers);
  AddressLookup* self = pending->owner;
  if (self == nullptr) return;  // cancelled
  self->pending_ = nullptr;
  try {
    self->Finish(error, answers);
  } catch (const std::exception& e) {
    MP_LOG_ERROR("dns answer for %s: %s", self->host_.c_str(), e.what());
  }
}

void AddressLookup::Finish(int error, const evutil_addrinfo* answers) {
  Done done = std::move(done_);  // `this` may be destroyed by done
  if (error != 0) {
    done(Status::Error(host_ + ": " + evutil_gai_strerror(error)));
    return;
  }
  std::vector<SocketAddress> addresses;
  for (const evutil_addrinfo* a = answers; a != nullptr && addresses.size() < kMaxAddresses;
       a = a->ai_next) {
    if (a->ai_addrlen > sizeof(sockaddr_storage) || !FamilyAllowed(family_, a->ai_family)) {
      continue;
    }
    SocketAddress sa;
    std::memcpy(&sa.storage, a->ai_addr, a->ai_addrlen);
    sa.length = static_cast<socklen_t>(a->ai_addrlen);
    addresses.push_back(sa);
  }
  if (addresses.empty()) {
    done(Status::Error(host_ + ": no address of the requested family"));
    return;
  }
  done(std::move(addresses));
}

}  // namespace mailpulse
