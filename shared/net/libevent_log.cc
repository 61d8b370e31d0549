#include "shared/net/libevent_log.h"

#include <event2/event.h>

#include "shared/logging.h"

namespace mailpulse {
namespace {

void OnLibeventLog(int severity, const char* message) noexcept {
  // Debug chatter (only with event_enable_debug_logging) stays out of the log.
  switch (severity) {
    case EVENT_LOG_DEBUG:
      return;
    case EVENT_LOG_MSG:
      MP_LOG_INFO("libevent: %s", message);
      return;
    case EVENT_LOG_WARN:
      MP_LOG_WARNING("libevent: %s", message);
      return;
    default:
      MP_LOG_ERROR("libevent: %s", message);
      return;
  }
}

}  // namespace

void RouteLibeventLogs() { event_set_log_callback(&OnLibeventLog); }

}  // namespace mailpulse
