// HttpGet: one blocking GET of http://HOST:PORT/path on a private event loop, for the command
// line clients of the daemons' HTTP listeners (`mailpulse-probe trace`, `mailpulse-milter
// top`). Not for use inside a daemon's loop.
#pragma once

#include <string>

#include "shared/endpoint.h"

namespace mailpulse {

struct HttpResponse {
  int status = 0;  // the HTTP status; 0: no answer (refused, timed out)
  std::string body;
};

HttpResponse HttpGet(const Endpoint& where, const std::string& path, int timeout_seconds = 10);
// POST of a JSON `body` to http://HOST:PORT/path, likewise.
HttpResponse HttpPost(const Endpoint& where, const std::string& path, const std::string& body,
                      int timeout_seconds = 10);

}  // namespace mailpulse
