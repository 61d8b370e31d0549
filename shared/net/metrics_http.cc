#include "shared/net/metrics_http.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <cstring>
#include <string>

namespace mailpulse {

StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Create(
    event_base* base, const Endpoint& listen, const MetricsRegistry* registry, Refresh refresh,
    Route route, PostRoute post) {
  if (listen.kind != Endpoint::Kind::kTcp) {
    return Status::Error("metrics listen address must be HOST:PORT, not " + listen.ToString());
  }
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(registry, std::move(refresh), std::move(route), std::move(post)));
  server->http_.reset(evhttp_new(base));
  if (!server->http_) return Status::Error("evhttp_new failed");
  evhttp_set_allowed_methods(server->http_.get(), EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
                                                      (server->post_ ? EVHTTP_REQ_POST : 0));
  evhttp_set_gencb(server->http_.get(), &MetricsHttpServer::HandleRequest, server.get());
  const std::string host = listen.host.empty() ? "127.0.0.1" : listen.host;
  if (evhttp_bind_socket(server->http_.get(), host.c_str(), listen.port) != 0) {
    return Status::Error("cannot listen for /metrics on " + listen.ToString() + ": " +
                         std::strerror(errno));
  }
  return server;
}

void MetricsHttpServer::HandleRequest(evhttp_request* req, void* self) noexcept {
  auto* server = static_cast<MetricsHttpServer*>(self);
  try {
    const char* path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
      server->HandlePost(req, path);
      return;
    }
    evbuffer* out = evhttp_request_get_output_buffer(req);
    evkeyvalq* headers = evhttp_request_get_output_headers(req);
    if (path != nullptr && std::strcmp(path, "/metrics") == 0) {
      if (server->refresh_) server->refresh_();
      const std::string body = server->registry_->RenderPrometheus();
      evbuffer_add(out, body.data(), body.size());
      evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
      evhttp_send_reply(req, HTTP_OK, "OK", nullptr);
      return;
    }
    if (path != nullptr && std::strcmp(path, "/") == 0) {
      static constexpr char kIndex[] = "mailpulse: metrics at /metrics\n";
      evbuffer_add(out, kIndex, sizeof kIndex - 1);
      evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
      evhttp_send_reply(req, HTTP_OK, "OK", nullptr);
      return;
    }
    if (path != nullptr && server->route_) {
      if (std::optional<std::string> body = server->route_(path)) {
        evbuffer_add(out, body->data(), body->size());
        evhttp_add_header(headers, "Content-Type", "application/json");
        evhttp_send_reply(req, HTTP_OK, "OK", nullptr);
        return;
      }
    }
    evhttp_send_error(req, HTTP_NOTFOUND, "Not Found");
  } catch (...) {
    evhttp_send_error(req, HTTP_INTERNAL, "Internal Server Error");
  }
}

void MetricsHttpServer::HandlePost(evhttp_request* req, const char* path) {
  // The peer's address as evhttp parsed it: "127.0.0.1", "::1".
  char* peer = nullptr;
  ev_uint16_t port = 0;
  evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
  const std::string_view address = peer != nullptr ? peer : "";
  const bool loopback =
      address.rfind("127.", 0) == 0 || address == "::1" || address.rfind("::ffff:127.", 0) == 0;
  if (!loopback) {
    evhttp_send_error(req, 403, "Forbidden: commands only from loopback");
    return;
  }
  evbuffer* in = evhttp_request_get_input_buffer(req);
  std::string body(evbuffer_get_length(in), '\0');
  evbuffer_remove(in, body.data(), body.size());
  std::optional<std::pair<int, std::string>> reply;
  if (path != nullptr) reply = post_(path, body);
  if (!reply) {
    evhttp_send_error(req, HTTP_NOTFOUND, "Not Found");
    return;
  }
  evbuffer* out = evhttp_request_get_output_buffer(req);
  evbuffer_add(out, reply->second.data(), reply->second.size());
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply(req, reply->first, reply->first < 400 ? "OK" : "Error", nullptr);
}

}  // namespace mailpulse
