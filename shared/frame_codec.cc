// Varint-length-prefixed framing of the event socket (see frame_codec.h for the wire format).
#include "shared/frame_codec.h"

#include <climits>
#include <cstdint>
#include <string>
#include <utility>

namespace mailpulse {
namespace {

// A length prefix is at most 5 varint bytes: 4 x 7 bits plus 4 bits of the fifth byte make 32.
constexpr std::size_t kMaxLengthBytes = 5;
constexpr unsigned kContinuationBit = 0x80;
constexpr unsigned kPayloadBits = 0x7f;
// The fifth byte may only carry bits 28..31 of the length.
constexpr unsigned kFifthByteMaxValue = 0x0f;

void AppendVarint(std::uint64_t value, std::string* out) {
  while (value >= kContinuationBit) {
    out->push_back(static_cast<char>((value & kPayloadBits) | kContinuationBit));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

}  // namespace

void AppendFrame(std::string_view payload, std::string* out) {
  AppendVarint(payload.size(), out);
  out->append(payload);
}

void AppendEventFrame(const proto::Event& event, std::string* out) {
  // ByteSizeLong() caches the sizes that SerializeWithCachedSizesToArray then relies on, so the
  // payload is written straight into *out without an intermediate string.
  const std::size_t size = event.ByteSizeLong();
  AppendVarint(size, out);
  const std::size_t offset = out->size();
  out->resize(offset + size);
  event.SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(out->data() + offset));
}

FrameDecoder::FrameDecoder(std::size_t max_frame_size) : max_frame_size_(max_frame_size) {}

std::size_t FrameDecoder::buffered() const { return length_bytes_.size() + payload_.size(); }

Status FrameDecoder::Fail(std::string message) {
  failed_ = true;
  error_ = std::move(message);
  length_bytes_.clear();
  payload_ = std::string();  // release the partial frame's memory
  return Status::Error(error_);
}

// Reads varint bytes from *bytes until the prefix is complete or the input runs out.
Status FrameDecoder::ReadLength(std::string_view* bytes) {
  while (!bytes->empty() && !have_length_) {
    const auto byte = static_cast<unsigned char>(bytes->front());
    bytes->remove_prefix(1);
    length_bytes_.push_back(static_cast<char>(byte));
    const std::size_t index = length_bytes_.size() - 1;
    if (index == kMaxLengthBytes - 1) {
      if ((byte & kContinuationBit) != 0) {
        return Fail("malformed length prefix: varint longer than 5 bytes");
      }
      if (byte > kFifthByteMaxValue) {
        return Fail("malformed length prefix: value does not fit in 32 bits");
      }
    }
    expected_ |= static_cast<std::size_t>(byte & kPayloadBits) << (7 * index);
    have_length_ = (byte & kContinuationBit) == 0;
  }
  // Checked before a single payload byte is buffered, so a hostile length costs nothing.
  if (have_length_ && expected_ > max_frame_size_) {
    return Fail("frame length " + std::to_string(expected_) + " exceeds maximum " +
                std::to_string(max_frame_size_));
  }
  return Status::Ok();
}

void FrameDecoder::FinishFrame(std::vector<std::string>* frames) {
  frames->push_back(std::move(payload_));
  payload_ = std::string();
  length_bytes_.clear();
  expected_ = 0;
  have_length_ = false;
}

Status FrameDecoder::Feed(std::string_view bytes, std::vector<std::string>* frames) {
  if (failed_) return Status::Error(error_);
  while (true) {
    if (!have_length_) {
      Status status = ReadLength(&bytes);
      if (!status.ok()) return status;
      if (!have_length_) return Status::Ok();  // input ended inside the prefix
    }
    // A zero-length frame completes here even when `bytes` is already exhausted.
    const std::size_t missing = expected_ - payload_.size();
    if (bytes.size() < missing) {
      if (bytes.empty()) return Status::Ok();
      // Reserving exactly the announced length (already checked against the maximum) keeps the
      // allocation bounded; letting append() grow the string could overshoot by up to 2x.
      if (payload_.empty()) payload_.reserve(expected_);
      payload_.append(bytes);
      return Status::Ok();
    }
    if (payload_.empty()) {
      payload_.assign(bytes.substr(0, missing));  // whole frame in this chunk: one exact copy
    } else {
      payload_.append(bytes.substr(0, missing));
    }
    bytes.remove_prefix(missing);
    FinishFrame(frames);
  }
}

StatusOr<proto::Event> ParseEvent(std::string_view payload) {
  if (payload.size() > static_cast<std::size_t>(INT_MAX)) {
    return Status::Error("event payload of " + std::to_string(payload.size()) +
                         " bytes is too large to parse");
  }
  proto::Event event;
  if (!event.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::Error("malformed event: " + std::to_string(payload.size()) +
                         " payload bytes are not a valid mailpulse.proto.Event");
  }
  return event;
}

}  // namespace mailpulse
