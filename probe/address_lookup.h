// Where a check connects to: socket addresses, literal addresses, and the asynchronous
// A/AAAA lookup of a name through evdns (the hosts file honoured). Glue: evdns owns the
// request, AddressLookup owns the callback's context and cancels on destruction, so an answer
// that arrives after the check gave up (or was destroyed) finds nobody to tell. Not
// thread-safe; lives on the thread of its event_base.
#pragma once

#include <event2/dns.h>
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "shared/status.h"

namespace mailpulse {

enum class AddressFamily { kAny, kIpv4, kIpv6 };

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  std::string ToString() const;  // "192.0.2.1:25", "[2001:db8::1]:25"
};

// A literal IPv4 or IPv6 address (no brackets) with `port`, or nullopt for a name.
std::optional<SocketAddress> ParseLiteralAddress(const std::string& host, std::uint16_t port);

// Whether an address of `family` (AF_INET, AF_INET6) is wanted.
bool FamilyAllowed(AddressFamily want, int family);

class AddressLookup {
 public:
  // The addresses of the wanted family in the resolver's order (never empty, at most 16), or
  // why there are none ("mx.example.org: nodename nor servname provided, or not known").
  using Done = std::function<void(StatusOr<std::vector<SocketAddress>>)>;

  // `dns` must outlive the lookup.
  AddressLookup(evdns_base* dns, std::string host, std::uint16_t port, AddressFamily family,
                Done done);
  // Cancels a lookup still in flight: `done` will not run.
  ~AddressLookup();
  AddressLookup(const AddressLookup&) = delete;
  AddressLookup& operator=(const AddressLookup&) = delete;

  // Starts the lookup. `done` runs once, from the event loop or, when evdns answers at once
  // (hosts file, immediate errors), from within Start; the lookup may be destroyed in `done`.
  void Start();

 private:
  // The evdns callback's argument: handed to evdns in Start and reclaimed by OnAnswer, which
  // evdns calls exactly once (also after a cancel, later, from the loop). `owner` is cleared
  // on cancel.
  struct Pending {
    AddressLookup* owner = nullptr;
    evdns_getaddrinfo_request* request = nullptr;
  };
  static void OnAnswer(int error, evutil_addrinfo* answers, void* arg) noexcept;
  void Finish(int error, const evutil_addrinfo* answers);

  evdns_base* dns_;
  std::string host_;
  std::uint16_t port_;
  AddressFamily family_;
  Done done_;
  Pending* pending_ = nullptr;  // not owned; see Pending
};

}  // namespace mailpulse
