// EventOutbox hands frames from any thread — the milter's per-connection threads — to an
// EventSender on its event loop's thread, without ever making the caller wait: Post() takes a
// short mutex, appends to a bounded queue (dropping and counting the frame when it is full)
// and wakes the loop, which drains the queue into the sender. Thread-safe: Post from any
// thread; everything else on the loop's thread. Needs evthread_use_pthreads() before the
// event_base was created.
#pragma once

#include <event2/event.h>

#include <cstddef>
#include <deque>
#include <mutex>
#include <string>

#include "shared/libevent_ptr.h"
#include "shared/metrics.h"
#include "shared/net/event_sender.h"

namespace mailpulse {

class EventOutbox {
 public:
  // `sender` and `dropped` must outlive the outbox.
  EventOutbox(event_base* base, EventSender* sender, std::size_t max_frames, Counter* dropped);
  EventOutbox(const EventOutbox&) = delete;
  EventOutbox& operator=(const EventOutbox&) = delete;

  // Any thread: queues one frame (length prefix included) for the sender.
  void Post(std::string frame);

 private:
  static void OnWake(evutil_socket_t, short, void* arg) noexcept;
  void Drain();

  EventSender* sender_;
  const std::size_t max_frames_;
  Counter* dropped_;
  EventPtr wake_;
  std::mutex mu_;
  std::deque<std::string> frames_;
};

}  // namespace mailpulse
