// MetricsHttpServer serves GET /metrics (Prometheus text format) from a MetricsRegistry with
// libevent's evhttp, on the event loop it is given. Binds in Create(), so the caller can bind
// while still root and drop privileges afterwards. Runs on the loop's thread only.
#pragma once

#include <event2/event.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "shared/endpoint.h"
#include "shared/libevent_ptr.h"
#include "shared/metrics.h"
#include "shared/status.h"

namespace mailpulse {

class MetricsHttpServer {
 public:
  // Runs before each rendering, on the loop's thread: sets gauges that are read, not pushed.
  using Refresh = std::function<void()>;
  // Serves other GET paths: returns the JSON body for `path`, or nullopt for 404.
  using Route = std::function<std::optional<std::string>(std::string_view path)>;
  // Serves POST requests (commands such as `mailpulse-probe ack`): the HTTP status and JSON
  // body for `path` with request `body`, or nullopt for 404. Accepted only from a loopback
  // peer (127.0.0.0/8, ::1), whatever address the server listens on; others get 403.
  using PostRoute = std::function<std::optional<std::pair<int, std::string>>(
      std::string_view path, std::string_view body)>;

  // `registry` must outlive the server.
  static StatusOr<std::unique_ptr<MetricsHttpServer>> Create(
      event_base* base, const Endpoint& listen, const MetricsRegistry* registry,
      Refresh refresh = nullptr, Route route = nullptr, PostRoute post = nullptr);

 private:
  MetricsHttpServer(const MetricsRegistry* registry, Refresh refresh, Route route, PostRoute post)
      : registry_(registry),
        refresh_(std::move(refresh)),
        route_(std::move(route)),
        post_(std::move(post)) {}
  void HandlePost(evhttp_request* req, const char* path);
  static void HandleRequest(evhttp_request* req, void* self) noexcept;

  const MetricsRegistry* registry_;
  Refresh refresh_;
  Route route_;
  PostRoute post_;
  EvHttpPtr http_;
};

}  // namespace mailpulse
