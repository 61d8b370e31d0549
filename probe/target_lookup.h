// Where a check connects to, in order: the dns phase of a check. For a host, its A/AAAA
// records (AddressLookup). For a mail domain (RFC 5321 section 5.1), its MX hosts (MxLookup:
// by preference, the implicit MX, the null MX) and then the addresses of every MX host,
// looked up at once; the result lists the first host's addresses, then the next host's, each
// address with the MX host it belongs to, so that a refused connect can move on to the next
// host and TLS can check the name of the host actually reached. An MX host without an address
// is skipped; none with one is an error. Destroying a lookup cancels everything in flight: its
// callback will not run. Glue; not thread-safe: lives on the thread of its event_base.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "probe/address_lookup.h"
#include "probe/mx_lookup.h"
#include "shared/status.h"

namespace mailpulse {

class Resolver;

struct ConnectCandidate {
  SocketAddress address;
  std::string mx_host;  // the MX host this address belongs to; empty without MX lookup
};

class TargetLookup {
 public:
  // The candidates in the order to try (never empty), or why there are none.
  using Done = std::function<void(StatusOr<std::vector<ConnectCandidate>>)>;

  // `resolver` must outlive the lookup. With `mx`, `host` is a mail domain.
  TargetLookup(Resolver* resolver, std::string host, std::uint16_t port, AddressFamily family,
               bool mx, Done done);
  ~TargetLookup();
  TargetLookup(const TargetLookup&) = delete;
  TargetLookup& operator=(const TargetLookup&) = delete;

  // Starts the lookup. `done` runs once, from the event loop or from within Start; the lookup
  // may be destroyed in `done`.
  void Start();

  // What an MX lookup still waits for, for a timeout's message: "the MX records",
  // "the address of mx2.example.org"; empty for a plain host lookup.
  std::string WaitingFor() const;

 private:
  void HandleMxHosts(StatusOr<MxHosts> answer);
  void HandleAddresses(std::size_t index, StatusOr<std::vector<SocketAddress>> answer);
  void FinishWhenComplete();

  Resolver* resolver_;
  std::string host_;
  std::uint16_t port_;
  AddressFamily family_;
  bool mx_;
  Done done_;
  std::unique_ptr<AddressLookup> host_lookup_;
  std::unique_ptr<MxLookup> mx_lookup_;
  bool mx_answered_ = false;
  bool implicit_mx_ = false;
  std::vector<std::string> mx_hosts_;
  std::vector<std::unique_ptr<AddressLookup>> mx_host_lookups_;
  std::vector<std::optional<StatusOr<std::vector<SocketAddress>>>> mx_host_answers_;
  bool starting_mx_host_lookups_ = false;
};

}  // namespace mailpulse
