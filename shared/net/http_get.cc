#include "shared/net/http_get.h"

#include <event2/buffer.h>
#include <event2/http.h>

#include "shared/libevent_ptr.h"

namespace mailpulse {
namespace {

struct Fetch {
  HttpResponse response;
  EventBasePtr base;
};

void OnResponse(evhttp_request* req, void* arg) noexcept {
  auto* fetch = static_cast<Fetch*>(arg);
  if (req != nullptr) {
    fetch->response.status = evhttp_request_get_response_code(req);
    evbuffer* in = evhttp_request_get_input_buffer(req);
    const std::size_t n = evbuffer_get_length(in);
    fetch->response.body.resize(n);
    evbuffer_remove(in, fetch->response.body.data(), n);
  }
  event_base_loopbreak(fetch->base.get());
}

HttpResponse Request(evhttp_cmd_type method, const Endpoint& where, const std::string& path,
                     const std::string* body, int timeout_seconds) {
  Fetch fetch;
  fetch.base.reset(event_base_new());
  if (!fetch.base) return {};
  evhttp_connection* conn =
      evhttp_connection_base_new(fetch.base.get(), nullptr, where.host.c_str(), where.port);
  if (conn == nullptr) return {};
  evhttp_connection_set_timeout(conn, timeout_seconds);
  evhttp_request* req = evhttp_request_new(&OnResponse, &fetch);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Host", where.host.c_str());
  if (body != nullptr) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), body->data(), body->size());
  }
  if (evhttp_make_request(conn, req, method, path.c_str()) == 0) {
    event_base_dispatch(fetch.base.get());
  }
  evhttp_connection_free(conn);
  return fetch.response;
}

}  // namespace

HttpResponse HttpGet(const Endpoint& where, const std::string& path, int timeout_seconds) {
  return Request(EVHTTP_REQ_GET, where, path, nullptr, timeout_seconds);
}

HttpResponse HttpPost(const Endpoint& where, const std::string& path, const std::string& body,
                      int timeout_seconds) {
  return Request(EVHTTP_REQ_POST, where, path, &body, timeout_seconds);
}

}  // namespace mailpulse
