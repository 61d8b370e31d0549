// ProbeInspector: what the milter does with probe messages, one MTA connection at a time, fed
// in the order of the milter callbacks (connect, mail, rcpt, header, body, end of message,
// abort). A message whose X-Mailpulse-Probe token verifies (shared/probe_token.h) gets a hop
// stamp and becomes a HopSighting — a delivery if every recipient is a configured sink, then
// optionally discarded. A token that does not verify is reported as a problem (for the
// metric), optionally stripped, and the message is treated as any other. A DSN addressed to a
// probe return path, with a failed recipient, whose returned message carries a token with a
// good MAC becomes a ProbeBounce (delay warnings are not); only such DSN candidates need their body
// (WantsBody), every other body is only counted by SessionAccounting, never kept. Pure: no
// libmilter, no clock (times come in), no logging. Not thread-safe: one per MTA connection; the
// policy is shared read-only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/probe_token.h"
#include "shared/proto/event.pb.h"

namespace mailpulse {

// The milter's probe settings, shared by every connection; immutable but for the replay
// guard, which is thread-safe.
struct ProbePolicy {
  const ProbeKey* key = nullptr;  // null: probe handling off, tokens are not looked at
  TokenLimits limits;
  ReplayGuard* replay = nullptr;
  std::string hop;
  std::vector<std::string> sinks;         // addresses, lower case
  std::vector<std::string> return_paths;  // DSNs to these are read; empty: to any recipient
  bool discard_at_sinks = false;
  bool strip_invalid = false;
};

struct HeaderEdit {
  enum class Kind { kInsertFirst, kDelete };
  Kind kind = Kind::kInsertFirst;
  std::string name;
  std::string value;  // kInsertFirst
  int index = 0;      // kDelete: the 1-based occurrence among headers of that name
};

struct ProbeVerdict {
  std::optional<proto::HopSighting> sighting;
  std::optional<proto::ProbeBounce> bounce;
  TokenProblem invalid = TokenProblem::kNone;  // a token that did not verify
  std::vector<HeaderEdit> edits;
  bool discard = false;
};

class ProbeInspector {
 public:
  explicit ProbeInspector(const ProbePolicy* policy) : policy_(policy) {}

  void OnConnect(std::int64_t now_unix_us, std::string_view client_address);
  void OnTls(bool tls) { tls_ = tls; }
  void OnMail(std::int64_t now_unix_us);
  // An accepted recipient ("<a@b>" or "a@b"); rejected ones must not be passed.
  void OnRcpt(std::string_view address);
  void OnHeader(std::string_view name, std::string_view value);
  // Whether the body of the current message is wanted (a DSN to a return path).
  bool WantsBody() const { return !dsn_boundary_.empty() && body_.size() < kMaxDsnBodyBytes; }
  void OnBody(std::string_view chunk);
  ProbeVerdict OnEndOfMessage(std::int64_t now_unix_us, std::string_view queue_id);
  void OnAbort() { ResetMessage(); }

 private:
  static constexpr std::size_t kMaxDsnBodyBytes = 256 * 1024;

  void ResetMessage();
  bool AllRecipientsAreSinks() const;
  bool ToReturnPath() const;
  void InspectToken(std::int64_t now_unix_us, std::string_view queue_id, ProbeVerdict* v);
  void InspectDsn(std::int64_t now_unix_us, std::string_view queue_id, ProbeVerdict* v);

  const ProbePolicy* policy_;
  std::int64_t connect_us_ = 0;
  std::string client_address_;
  bool tls_ = false;

  // The message in progress.
  std::int64_t mail_us_ = 0;
  std::vector<std::string> recipients_;  // lower case, without angle brackets
  std::vector<std::string> tokens_;      // every X-Mailpulse-Probe value, in order
  std::string dsn_boundary_;             // set when the message is a DSN to a return path
  std::string body_;
};

}  // namespace mailpulse
