#include "probe/event_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <vector>

#include "shared/logging.h"
#include "shared/net/tls.h"

namespace mailpulse {
namespace {

constexpr timeval kHelloTimeout = {10, 0};

StatusOr<socklen_t> ListenAddress(const Endpoint& where, sockaddr_storage* addr) {
  if (where.kind == Endpoint::Kind::kUnix) {
    auto* sun = reinterpret_cast<sockaddr_un*>(addr);
    sun->sun_family = AF_UNIX;
    std::strncpy(sun->sun_path, where.path.c_str(), sizeof sun->sun_path - 1);
    return static_cast<socklen_t>(sizeof(sockaddr_un));
  }
  const std::string host = where.host.empty() ? "127.0.0.1" : where.host;
  auto* in = reinterpret_cast<sockaddr_in*>(addr);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(addr);
  if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(where.port);
    return static_cast<socklen_t>(sizeof(sockaddr_in));
  }
  if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(where.port);
    return static_cast<socklen_t>(sizeof(sockaddr_in6));
  }
  return Status::Error("event socket " + where.ToString() + ": listen on an IP address");
}

std::string PeerAddress(const sockaddr* addr) {
  char host[INET6_ADDRSTRLEN] = "local";
  if (addr->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, host, sizeof host);
  } else if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, host, sizeof host);
  }
  return host;
}

bool SameToken(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Peer text in log lines: printable, short.
std::string SafeName(const std::string& name) {
  std::string out;
  for (unsigned char c : name.substr(0, 64)) {
    out += (c > 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<EventServer>> EventServer::Create(event_base* base, const Endpoint& where,
                                                           Handler handler, Counter* dropped_peers,
                                                           const EventServerTls* tls) {
  if (where.tls != (tls != nullptr)) {
    return Status::Error("event socket " + where.ToString() +
                         (where.tls ? ": TLS needs a certificate, key and token"
                                    : ": TLS settings for a socket without TLS"));
  }
  std::unique_ptr<EventServer> server(new EventServer(base, std::move(handler), dropped_peers));
  if (tls != nullptr) {
    if (!tls->context || tls->token.empty()) {
      return Status::Error("event socket " + where.ToString() + ": TLS needs a context and token");
    }
    server->tls_context_ = tls->context;
    server->token_ = tls->token;
  }
  sockaddr_storage addr{};
  StatusOr<socklen_t> len = ListenAddress(where, &addr);
  if (!len.ok()) return len.status();
  if (where.kind == Endpoint::Kind::kUnix) {
    struct stat st {};
    if (lstat(where.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(where.path.c_str());
    server->unix_path_ = where.path;
  }
  const mode_t old_umask = umask(0117);  // the unix socket is born 0660
  server->listener_.reset(
      evconnlistener_new_bind(base, &EventServer::OnAccept, server.get(),
                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 64,
                              reinterpret_cast<sockaddr*>(&addr), static_cast<int>(*len)));
  umask(old_umask);
  if (!server->listener_) {
    return Status::Error("cannot listen on event socket " + where.ToString() + ": " +
                         std::strerror(errno));
  }
  return server;
}

EventServer::~EventServer() {
  peers_.clear();
  listener_.reset();
  if (!unix_path_.empty()) unlink(unix_path_.c_str());
}

void EventServer::OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr* addr, int /*len*/,
                           void* self) noexcept {
  auto* server = static_cast<EventServer*>(self);
  try {
    server->Accept(fd, addr);
  } catch (const std::exception& e) {
    MP_LOG_ERROR("event socket: accept: %s", e.what());
  }
}

void EventServer::Accept(evutil_socket_t fd, const sockaddr* addr) {
  auto peer = std::make_unique<Peer>();
  peer->name = PeerAddress(addr) + "#" + std::to_string(next_peer_id_++);
  bufferevent* bev = nullptr;
  if (tls_context_) {
    SSL* ssl = SSL_new(tls_context_.get());
    if (ssl != nullptr) {
      bev = bufferevent_openssl_socket_new(base_, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                           BEV_OPT_CLOSE_ON_FREE);
      if (bev == nullptr) SSL_free(ssl);
    }
  } else {
    bev = bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE);
    peer->trusted = true;  // the unix socket's mode, or loopback, is the access control
  }
  if (bev == nullptr) {
    evutil_closesocket(fd);
    return;
  }
  peer->bev.reset(bev);
  bufferevent_setcb(bev, &EventServer::OnRead, nullptr, &EventServer::OnEvent, this);
  bufferevent_enable(bev, EV_READ);
  if (!peer->trusted) {
    // The timer's argument is the bufferevent, looked up again when it fires.
    peer->hello_deadline.reset(evtimer_new(base_, &EventServer::OnHelloDeadline, bev));
    event_add(peer->hello_deadline.get(), &kHelloTimeout);
  }
  peers_.emplace(bev, std::move(peer));
}

void EventServer::OnRead(bufferevent* bev, void* self) noexcept {
  auto* server = static_cast<EventServer*>(self);
  try {
    server->Read(bev);
  } catch (const std::exception& e) {
    MP_LOG_ERROR("event socket: read: %s", e.what());
  }
}

void EventServer::Read(bufferevent* bev) {
  auto it = peers_.find(bev);
  if (it == peers_.end()) return;
  Peer& peer = *it->second;
  evbuffer* in = bufferevent_get_input(bev);
  std::vector<std::string> frames;
  while (evbuffer_get_length(in) > 0) {
    const std::size_t n = evbuffer_get_contiguous_space(in);
    const auto* data = evbuffer_pullup(in, static_cast<ev_ssize_t>(n));
    Status s = peer.decoder.Feed(std::string_view(reinterpret_cast<const char*>(data), n), &frames);
    evbuffer_drain(in, n);
    if (!s.ok()) {
      Drop(bev, s.message());
      return;
    }
  }
  for (const std::string& frame : frames) {
    StatusOr<proto::Event> event = ParseEvent(frame);
    if (!event.ok()) {
      Drop(bev, event.status().message());
      return;
    }
    if (!Dispatch(peer, *event)) return;
  }
}

bool EventServer::Dispatch(Peer& peer, const proto::Event& event) {
  if (event.has_peer_hello()) {
    const proto::PeerHello& hello = event.peer_hello();
    if (tls_context_ && !SameToken(hello.token(), token_)) {
      Drop(peer.bev.get(),
           "wrong token in its hello (it calls itself '" + SafeName(hello.peer_name()) + "')");
      return false;
    }
    if (!hello.peer_name().empty()) peer.name = SafeName(hello.peer_name()) + "@" + peer.name;
    if (!peer.trusted) MP_LOG_INFO("event peer %s: authenticated", peer.name.c_str());
    peer.trusted = true;
    peer.hello_deadline.reset();
    return true;
  }
  if (!peer.trusted) {
    Drop(peer.bev.get(), "sent an event before its hello");
    return false;
  }
  try {
    handler_(peer.name, event);
  } catch (...) {
    MP_LOG_ERROR("event peer %s: handler failed; event ignored", peer.name.c_str());
  }
  return true;
}

void EventServer::OnEvent(bufferevent* bev, short what, void* self) noexcept {
  auto* server = static_cast<EventServer*>(self);
  if ((what & BEV_EVENT_ERROR) != 0 && server->tls_context_) {
    auto it = server->peers_.find(bev);
    if (it != server->peers_.end() && !it->second->trusted) {
      server->Drop(bev, "TLS: " + HandshakeFailureReason(bev, what));
      return;
    }
  }
  if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) != 0) server->peers_.erase(bev);
}

void EventServer::OnHelloDeadline(evutil_socket_t, short, void* arg) noexcept {
  // `arg` is the peer's bufferevent; the timer lives in the peer, so the server is reached
  // through the bufferevent's callback argument.
  auto* bev = static_cast<bufferevent*>(arg);
  bufferevent_data_cb read_cb = nullptr;
  bufferevent_data_cb write_cb = nullptr;
  bufferevent_event_cb event_cb = nullptr;
  void* self = nullptr;
  bufferevent_getcb(bev, &read_cb, &write_cb, &event_cb, &self);
  if (self != nullptr) static_cast<EventServer*>(self)->Drop(bev, "no hello within 10 s");
}

void EventServer::Drop(bufferevent* bev, const std::string& why) {
  auto it = peers_.find(bev);
  if (it == peers_.end()) return;
  MP_LOG_WARNING("event peer %s: %s; dropping the connection", it->second->name.c_str(),
                 why.c_str());
  ++dropped_peers_;
  if (dropped_counter_ != nullptr) dropped_counter_->Inc();
  ERR_clear_error();
  peers_.erase(it);
}

}  // namespace mailpulse
