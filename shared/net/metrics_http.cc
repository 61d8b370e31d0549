#include "shared/net/metrics_http.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <cstring>
#include <string>

namespace mailpulse {

StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Create(
    event_base* base, const Endpoint& listen, const MetricsRegistry* registry, Refresh refresh,
    Route route) {
  if (listen.kind != Endpoint::Kind::kTcp) {
    return Status::Error("metrics listen address must be HOST:PORT, not " + listen.ToString());
  }
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(registry, std::move(refresh), std::move(route)));
  server->http_.reset(evhttp_new(base));
  if (!server->http_) return Status::Error("evhttp_new failed");
  evhttp_set_allowed_methods(server->http_.get(), EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
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

}  // namespace mailpulse
