#include "shared/net/event_outbox.h"

#include <algorithm>
#include <utility>

namespace mailpulse {

EventOutbox::EventOutbox(event_base* base, EventSender* sender, std::size_t max_frames,
                         Counter* dropped)
    : sender_(sender),
      max_frames_(std::max<std::size_t>(max_frames, 1)),
      dropped_(dropped),
      wake_(event_new(base, -1, 0, &EventOutbox::OnWake, this)) {}

void EventOutbox::Post(std::string frame) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (frames_.size() >= max_frames_) {
      dropped_->Inc();
      return;
    }
    wake = frames_.empty();  // otherwise a wake-up is already on its way
    frames_.push_back(std::move(frame));
  }
  if (wake && wake_) event_active(wake_.get(), 0, 0);
}

void EventOutbox::OnWake(evutil_socket_t, short, void* arg) noexcept {
  try {
    static_cast<EventOutbox*>(arg)->Drain();
  } catch (...) {
    // Out of memory while moving frames: they stay queued for the next wake-up.
  }
}

void EventOutbox::Drain() {
  std::deque<std::string> frames;
  {
    std::lock_guard lock(mu_);
    frames.swap(frames_);
  }
  for (std::string& frame : frames) sender_->Enqueue(std::move(frame));
}

}  // namespace mailpulse
