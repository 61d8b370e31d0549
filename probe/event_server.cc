#include "probe/event_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "shared/logging.h"

namespace mailpulse {

StatusOr<std::unique_ptr<EventServer>> EventServer::Create(event_base* base, const Endpoint& where,
                                                           Handler handler,
                                                           Counter* dropped_peers) {
  std::unique_ptr<EventServer> server(new EventServer(base, std::move(handler), dropped_peers));
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (where.kind == Endpoint::Kind::kUnix) {
    struct stat st {};
    if (lstat(where.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(where.path.c_str());
    auto* sun = reinterpret_cast<sockaddr_un*>(&addr);
    sun->sun_family = AF_UNIX;
    std::strncpy(sun->sun_path, where.path.c_str(), sizeof sun->sun_path - 1);
    len = sizeof(sockaddr_un);
    server->unix_path_ = where.path;
  } else {
    const std::string host = where.host.empty() ? "127.0.0.1" : where.host;
    auto* in = reinterpret_cast<sockaddr_in*>(&addr);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
    if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
      in->sin_family = AF_INET;
      in->sin_port = htons(where.port);
      len = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(where.port);
      len = sizeof(sockaddr_in6);
    } else {
      return Status::Error("event socket " + where.ToString() + ": listen on an IP address");
    }
  }
  const mode_t old_umask = umask(0117);  // the unix socket is born 0660
  server->listener_.reset(
      evconnlistener_new_bind(base, &EventServer::OnAccept, server.get(),
                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 64,
                              reinterpret_cast<sockaddr*>(&addr), static_cast<int>(len)));
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
  auto peer = std::make_unique<Peer>();
  char host[INET6_ADDRSTRLEN] = "local";
  if (addr->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(addr)->sin_addr, host, sizeof host);
  } else if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(addr)->sin6_addr, host, sizeof host);
  }
  peer->name = std::string(host) + "#" + std::to_string(server->next_peer_id_++);
  peer->bev.reset(bufferevent_socket_new(server->base_, fd, BEV_OPT_CLOSE_ON_FREE));
  if (!peer->bev) {
    evutil_closesocket(fd);
    return;
  }
  bufferevent_setcb(peer->bev.get(), &EventServer::OnRead, nullptr, &EventServer::OnEvent, server);
  bufferevent_enable(peer->bev.get(), EV_READ);
  bufferevent* key = peer->bev.get();
  server->peers_.emplace(key, std::move(peer));
}

void EventServer::OnRead(bufferevent* bev, void* self) noexcept {
  auto* server = static_cast<EventServer*>(self);
  auto it = server->peers_.find(bev);
  if (it == server->peers_.end()) return;
  Peer& peer = *it->second;
  evbuffer* in = bufferevent_get_input(bev);
  std::vector<std::string> frames;
  while (evbuffer_get_length(in) > 0) {
    const std::size_t n = evbuffer_get_contiguous_space(in);
    const auto* data = evbuffer_pullup(in, static_cast<ev_ssize_t>(n));
    Status s = peer.decoder.Feed(std::string_view(reinterpret_cast<const char*>(data), n), &frames);
    evbuffer_drain(in, n);
    if (!s.ok()) {
      server->Drop(bev, s.message());
      return;
    }
  }
  for (const std::string& frame : frames) {
    StatusOr<proto::Event> event = ParseEvent(frame);
    if (!event.ok()) {
      server->Drop(bev, event.status().message());
      return;
    }
    try {
      server->handler_(peer.name, *event);
    } catch (...) {
      MP_LOG_ERROR("event peer %s: handler failed; event ignored", peer.name.c_str());
    }
  }
}

void EventServer::OnEvent(bufferevent* bev, short what, void* self) noexcept {
  auto* server = static_cast<EventServer*>(self);
  if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) != 0) server->peers_.erase(bev);
}

void EventServer::Drop(bufferevent* bev, const std::string& why) {
  auto it = peers_.find(bev);
  if (it == peers_.end()) return;
  MP_LOG_WARNING("event peer %s: %s; dropping the connection", it->second->name.c_str(),
                 why.c_str());
  ++dropped_peers_;
  if (dropped_counter_ != nullptr) dropped_counter_->Inc();
  peers_.erase(it);
}

}  // namespace mailpulse
