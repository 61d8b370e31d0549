#include "probe/mx_lookup.h"

#include <arpa/nameser.h>
#include <netinet/in.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <utility>

#include "shared/logging.h"

namespace mailpulse {
namespace {

struct MxReplyDeleter {
  void operator()(ares_mx_reply* p) const noexcept { ares_free_data(p); }
};
using MxReplyPtr = std::unique_ptr<ares_mx_reply, MxReplyDeleter>;

// ares_library_init is not thread-safe and must precede the first channel; on Linux it
// holds no resources worth a matching cleanup, so it is done once per process.
Status InitAresLibrary() {
  static std::once_flag once;
  static int result = ARES_SUCCESS;
  std::call_once(once, [] { result = ares_library_init(ARES_LIB_INIT_ALL); });
  if (result != ARES_SUCCESS) {
    return Status::Error(std::string("cannot initialise c-ares: ") + ares_strerror(result));
  }
  return Status::Ok();
}

// The servers as c-ares wants them: a list that it copies, ports in host byte order.
Status SetServers(ares_channel channel, const std::vector<SocketAddress>& nameservers) {
  std::vector<ares_addr_port_node> nodes(nameservers.size());
  for (std::size_t i = 0; i < nameservers.size(); ++i) {
    ares_addr_port_node& node = nodes[i];
    node.next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
    node.family = nameservers[i].family();
    std::uint16_t port = 0;
    if (node.family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&nameservers[i].storage);
      node.addr.addr4 = in->sin_addr;
      port = ntohs(in->sin_port);
    } else {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&nameservers[i].storage);
      std::memcpy(node.addr.addr6._S6_un._S6_u8, &in6->sin6_addr, sizeof in6->sin6_addr);
      port = ntohs(in6->sin6_port);
    }
    node.udp_port = node.tcp_port = port;
  }
  const int rc = ares_set_servers_ports(channel, nodes.empty() ? nullptr : nodes.data());
  if (rc != ARES_SUCCESS) {
    return Status::Error(std::string("cannot set the nameservers: ") + ares_strerror(rc));
  }
  return Status::Ok();
}

}  // namespace

AresChannel::AresChannel(event_base* base) : base_(base) {}

StatusOr<std::unique_ptr<AresChannel>> AresChannel::Create(
    event_base* base, const std::vector<SocketAddress>& nameservers, int try_timeout_ms,
    int tries) {
  if (Status s = InitAresLibrary(); !s.ok()) return s;
  std::unique_ptr<AresChannel> self(new AresChannel(base));
  self->timer_.reset(evtimer_new(base, &AresChannel::OnTimer, self.get()));
  if (!self->timer_) return Status::Error("cannot create the c-ares timer");
  try {
    self->random_.seed(std::random_device()());
  } catch (const std::exception&) {  // no entropy source: the order only spreads load
    self->random_.seed(static_cast<std::mt19937::result_type>(
        std::chrono::steady_clock::now().time_since_epoch().count()));
  }
  ares_options options{};
  options.sock_state_cb = &AresChannel::OnSocketState;
  options.sock_state_cb_data = self.get();
  options.timeout = try_timeout_ms;
  options.tries = tries;
  const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  const int rc = ares_init_options(&self->channel_, &options, mask);
  if (rc != ARES_SUCCESS) {
    self->channel_ = nullptr;
    return Status::Error(std::string("cannot set up c-ares: ") + ares_strerror(rc));
  }
  if (!nameservers.empty()) {
    if (Status s = SetServers(self->channel_, nameservers); !s.ok()) return s;
  }
  return self;
}

AresChannel::~AresChannel() {
  // Calls every pending query back with ARES_EDESTRUCTION (freeing its Pending) and closes
  // its sockets through OnSocketState, while sockets_ and timer_ still exist.
  if (channel_ != nullptr) ares_destroy(channel_);
}

std::size_t AresChannel::RandomBelow(std::size_t n) {
  if (n <= 1) return 0;
  return std::uniform_int_distribution<std::size_t>(0, n - 1)(random_);
}

void AresChannel::RearmTimer() {
  timeval tv{};
  const timeval* next = ares_timeout(channel_, nullptr, &tv);
  if (next != nullptr) {
    event_add(timer_.get(), next);
  } else {
    event_del(timer_.get());
  }
}

void AresChannel::OnSocketState(void* data, ares_socket_t fd, int readable, int writable) noexcept {
  auto* self = static_cast<AresChannel*>(data);
  try {
    self->WatchSocket(fd, readable != 0, writable != 0);
  } catch (const std::exception& e) {  // out of memory: the query times out instead
    MP_LOG_ERROR("dns: cannot watch a c-ares socket: %s", e.what());
  }
}

void AresChannel::WatchSocket(ares_socket_t fd, bool readable, bool writable) {
  if (!readable && !writable) {
    sockets_.erase(fd);  // c-ares closes it; freeing a running event is allowed
    return;
  }
  const short what =
      static_cast<short>(EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
  EventPtr event(event_new(base_, fd, what, &AresChannel::OnSocketReady, this));
  if (!event || event_add(event.get(), nullptr) != 0) {
    MP_LOG_ERROR("dns: cannot watch c-ares socket %d", static_cast<int>(fd));
    return;
  }
  sockets_[fd] = std::move(event);  // replaces (and frees) the previous watch of fd
}

void AresChannel::OnSocketReady(evutil_socket_t fd, short what, void* arg) noexcept {
  auto* self = static_cast<AresChannel*>(arg);
  ares_process_fd(self->channel_, (what & EV_READ) != 0 ? fd : ARES_SOCKET_BAD,
                  (what & EV_WRITE) != 0 ? fd : ARES_SOCKET_BAD);
  self->RearmTimer();
}

void AresChannel::OnTimer(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<AresChannel*>(arg);
  ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts only
  self->RearmTimer();
}

MxLookup::MxLookup(AresChannel* channel, std::string domain, Done done)
    : channel_(channel), domain_(std::move(domain)), done_(std::move(done)) {}

MxLookup::~MxLookup() {
  // The query runs on; OnAnswer frees `pending_` when c-ares is done with it.
  if (pending_ != nullptr) std::exchange(pending_, nullptr)->owner = nullptr;
}

void MxLookup::Start() {
  auto pending = std::make_unique<Pending>();
  pending->owner = this;
  pending_ = pending.get();
  AresChannel* const channel = channel_;
  // Hand-off: OnAnswer reclaims `pending`. c-ares may call it before ares_query returns, and
  // `done` may then destroy this lookup: nothing below touches `this`.
  ares_query(channel->get(), domain_.c_str(), ns_c_in, ns_t_mx, &MxLookup::OnAnswer,
             pending.release());
  channel->RearmTimer();
}

void MxLookup::OnAnswer(void* arg, int status, int /*timeouts*/, unsigned char* answer,
                        int length) noexcept {
  std::unique_ptr<Pending> pending(static_cast<Pending*>(arg));
  MxLookup* self = pending->owner;
  if (self == nullptr) return;  // the lookup is gone (ARES_EDESTRUCTION lands here too)
  self->pending_ = nullptr;
  try {
    self->Finish(status, answer, length);
  } catch (const std::exception& e) {
    MP_LOG_ERROR("dns MX answer for %s: %s", self->domain_.c_str(), e.what());
  }
}

void MxLookup::Finish(int status, const unsigned char* answer, int length) {
  Done done = std::move(done_);  // `this` may be destroyed by done
  MxAnswer mx;
  // ares_query maps the rcode: NOERROR without answers is ARES_ENODATA, NXDOMAIN is
  // ARES_ENOTFOUND; everything else is a resolver failure, named by c-ares.
  if (status == ARES_SUCCESS) {
    ares_mx_reply* parsed = nullptr;
    const int rc = ares_parse_mx_reply(answer, length, &parsed);
    MxReplyPtr owned(parsed);
    if (rc != ARES_SUCCESS && rc != ARES_ENODATA) {
      done(Status::Error(domain_ + ": malformed MX answer (" + ares_strerror(rc) + ")"));
      return;
    }
    for (const ares_mx_reply* r = parsed; r != nullptr; r = r->next) {
      mx.records.push_back({r->priority, r->host != nullptr ? r->host : ""});
    }
    mx.kind = mx.records.empty() ? MxAnswer::Kind::kNoRecords : MxAnswer::Kind::kRecords;
  } else if (status == ARES_ENODATA) {
    mx.kind = MxAnswer::Kind::kNoRecords;
  } else if (status == ARES_ENOTFOUND) {
    mx.kind = MxAnswer::Kind::kNoSuchDomain;
  } else if (status == ARES_ECANCELLED || status == ARES_EDESTRUCTION) {
    done(Status::Error(domain_ + ": resolver shut down (" + ares_strerror(status) + ")"));
    return;
  } else {
    done(Status::Error(domain_ + ": " + ares_strerror(status)));
    return;
  }
  AresChannel* const channel = channel_;
  done(MxHostsToTry(domain_, mx, [channel](std::size_t n) { return channel->RandomBelow(n); }));
}

}  // namespace mailpulse
