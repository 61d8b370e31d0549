// Framing of the shared event socket: each frame is a base-128 varint length (protobuf style,
// at most 5 bytes) followed by that many payload bytes, normally one serialized proto::Event.
// FrameDecoder is incremental: it accepts the byte stream split at any point and never
// allocates more than max_frame_size for one frame. Garbage (an over-long varint, a length over
// the limit) is a clear error, after which the decoder stays failed: drop the peer.
// Not thread-safe; one decoder per connection.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "shared/proto/event.pb.h"
#include "shared/status.h"

namespace mailpulse {

inline constexpr std::size_t kDefaultMaxFrameSize = 1 << 20;

// Appends varint(payload.size()) + payload to *out.
void AppendFrame(std::string_view payload, std::string* out);

// Serializes `event` and appends it as one frame to *out.
void AppendEventFrame(const proto::Event& event, std::string* out);

class FrameDecoder {
 public:
  explicit FrameDecoder(std::size_t max_frame_size = kDefaultMaxFrameSize);

  // Consumes `bytes`; every frame completed by them is appended to *frames. Returns an error
  // naming the problem on garbage; the decoder then stays failed and ignores further input.
  Status Feed(std::string_view bytes, std::vector<std::string>* frames);

  bool failed() const { return failed_; }
  // Bytes held for an incomplete frame (length prefix included).
  std::size_t buffered() const;

 private:
  // Reads length-prefix bytes from the front of *bytes; checks the length against the maximum.
  Status ReadLength(std::string_view* bytes);
  // Moves the completed payload to *frames and resets for the next frame.
  void FinishFrame(std::vector<std::string>* frames);
  // Enters the failed state for good, dropping any partial frame.
  Status Fail(std::string message);

  std::size_t max_frame_size_;
  std::string length_bytes_;  // the varint prefix of the frame being read
  std::string payload_;
  std::size_t expected_ = 0;
  bool have_length_ = false;
  bool failed_ = false;
  std::string error_;  // the first error, repeated by every later Feed()
};

// Parses one frame payload as an Event; an error if it is not a valid Event.
StatusOr<proto::Event> ParseEvent(std::string_view payload);

}  // namespace mailpulse
