// ImapSession: one IMAP4rev1 client conversation (RFC 3501) as a sans-IO state machine (no
// socket, no clock, no TLS library), for exactly one job: confirm that a probe message reached
// a mailbox, read its hop trail and remove it. The glue feeds it events — connected, bytes
// received, TLS established, peer closed, timed out — and carries out the actions it returns:
// send these bytes, start a TLS handshake, close. It walks greeting → [CAPABILITY] →
// [STARTTLS → TLS → CAPABILITY] → LOGIN or AUTHENTICATE PLAIN → SELECT → UID SEARCH HEADER
// X-Mailpulse-Probe "id=<id>" → UID FETCH of the hits' probe headers → (the id checked
// exactly: SEARCH matches substrings) → UID STORE +FLAGS.SILENT (\Deleted) → UID EXPUNGE
// (with UIDPLUS, RFC 4315) or EXPUNGE → LOGOUT, and ends with an ImapOutcome: found or not,
// the headers of each confirmed message, or the failure with its phase and the server's
// response. The password is sent and never kept anywhere an outcome or a log could show it.
// Not thread-safe; one instance per confirmation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "probe/imap/imap_response.h"
#include "probe/imap/probe_message.h"

namespace mailpulse {

enum class ImapTlsMode {
  kImplicit,  // TLS from connect (port 993, RFC 8314)
  kStartTls,  // plaintext greeting, then STARTTLS (RFC 3501 section 6.2.1)
};

enum class ImapAuthMethod {
  kAuto,   // AUTHENTICATE PLAIN when the server offers AUTH=PLAIN, else LOGIN
  kLogin,  // LOGIN user password
  kPlain,  // AUTHENTICATE PLAIN (RFC 4616), with SASL-IR (RFC 4959) when offered
};

// The phases of a confirmation, in order. Names (ImapPhaseName) suit a `phase` label.
enum class ImapPhase {
  kDns,
  kConnect,
  kTlsHandshake,
  kGreeting,
  kCapability,
  kStartTls,
  kLogin,
  kSelect,
  kSearch,
  kFetch,
  kStore,
  kExpunge,
  kLogout,
};
inline constexpr int kImapPhaseCount = 13;
std::string_view ImapPhaseName(ImapPhase p);

enum class ImapFailure {
  kNone,
  kDnsFailure,          // glue
  kConnectionRefused,   // glue
  kConnectTimeout,      // glue
  kTimeout,             // no response in time (the phase says to what)
  kTlsHandshakeFailed,  // detail: OpenSSL's reason
  kCertificateInvalid,  // detail: expired, wrong name, untrusted ...
  kStartTlsNotOffered,  // no STARTTLS capability, or a PREAUTH greeting before it
  kAuthNotOffered,      // LOGINDISABLED and no AUTH=PLAIN (or kPlain asked and not offered)
  kAuthRejected,        // NO or BAD to LOGIN or AUTHENTICATE (server_text says why)
  kMailboxUnavailable,  // NO or BAD to SELECT: missing, no access
  kCommandRejected,     // NO or BAD to another command
  kServerBye,           // the server said BYE before LOGOUT (server_text says why)
  kServerClosed,        // the connection closed mid-conversation
  kProtocolViolation,   // garbage, a limit exceeded, an unexpected response
  kInvalidOptions,      // not a probe id, no user: nothing was sent
};
std::string_view ImapFailureName(ImapFailure f);  // "auth_rejected", "server_bye", ...

struct ImapCapabilities {
  bool imap4rev1 = false;
  bool starttls = false;
  bool login_disabled = false;
  bool auth_plain = false;
  bool sasl_ir = false;
  bool literal_plus = false;   // LITERAL+ (RFC 7888): non-synchronizing literals
  bool literal_minus = false;  // LITERAL- (RFC 7888): the same up to 4096 octets
  bool uidplus = false;
};

struct ImapSessionOptions {
  ImapTlsMode tls = ImapTlsMode::kImplicit;
  ImapAuthMethod auth = ImapAuthMethod::kAuto;
  std::string user;
  std::string password;  // never logged, never in an outcome
  std::string mailbox = "INBOX";
  std::string probe_id;  // 32 hex digits
  bool keep = false;     // confirm and report only; do not delete
  ImapLimits limits;
};

struct ImapOutcome {
  bool success = false;  // the conversation completed: found or not found
  ImapFailure failure = ImapFailure::kNone;
  ImapPhase phase = ImapPhase::kConnect;  // where it failed (or the last phase, on success)
  std::string server_text;     // the server's response there ("NO [..] ..."), when there was one
  std::string detail;          // our own reason, for failures that are not a server response
  std::size_t candidates = 0;  // UIDs SEARCH returned
  std::vector<ProbeMessage> messages;  // the confirmed ones, in UID order
  std::size_t deleted = 0;             // confirmed messages flagged and expunged
  ImapCapabilities capabilities;       // the last ones learnt

  bool found() const { return success && !messages.empty(); }
};

struct ImapAction {
  enum class Kind {
    kSend,          // write `bytes` to the connection
    kStartTls,      // begin the TLS handshake now; then call OnTlsEstablished or OnTlsFailed
    kClose,         // close the connection; the confirmation is over (see outcome())
    kPhaseStarted,  // a timing marker: `phase` starts now (the previous one ends)
  };
  Kind kind;
  std::string bytes;
  ImapPhase phase = ImapPhase::kConnect;
};

class ImapSession {
 public:
  explicit ImapSession(ImapSessionOptions options);

  // What the session cannot work with: a probe id that is not 32 hex digits, an empty user,
  // password or mailbox, a NUL anywhere. The glue checks before it connects; a session given
  // such options fails with kInvalidOptions at OnConnected, before sending anything.
  static Status CheckOptions(const ImapSessionOptions& options);

  // The TCP connection is up (for implicit TLS: the TLS handshake is done, too).
  std::vector<ImapAction> OnConnected();
  std::vector<ImapAction> OnBytes(std::string_view data);
  std::vector<ImapAction> OnTlsEstablished();
  std::vector<ImapAction> OnTlsFailed(ImapFailure kind, std::string_view reason);
  std::vector<ImapAction> OnPeerClosed();
  // The glue's per-phase or overall deadline passed.
  std::vector<ImapAction> OnTimeout();

  ImapPhase phase() const { return phase_; }
  bool done() const { return done_; }
  const ImapOutcome& outcome() const { return outcome_; }

 private:
  // What the session waits for next.
  enum class Await {
    kConnection,
    kGreeting,
    kCapability,  // then `after_capability_`
    kStartTls,
    kTlsHandshake,
    kLogin,  // LOGIN or AUTHENTICATE
    kSelect,
    kSearch,
    kFetch,
    kStore,
    kExpunge,
    kLogout,
    kNothing,  // done
  };
  using Actions = std::vector<ImapAction>;

  void HandleResponse(const ImapResponse& r, bool more_buffered, Actions* actions);
  void HandleUntagged(const ImapResponse& r, Actions* actions);
  void HandleGreeting(const ImapResponse& r, Actions* actions);
  void HandleContinuation(const ImapResponse& r, Actions* actions);
  void HandleTagged(const ImapResponse& r, bool more_buffered, Actions* actions);
  void HandleSearchData(const ImapResponse& r, Actions* actions);
  void HandleFetchData(const ImapResponse& r, Actions* actions);
  void NoteCapabilities(const std::vector<std::string_view>& words);
  // The next command once the state allows it: CAPABILITY while the capabilities are not
  // known, STARTTLS, the login, then SELECT.
  void Proceed(Actions* actions);
  void StartLogin(Actions* actions);
  void StartFetch(Actions* actions);
  void AfterFetch(Actions* actions);
  void StartExpunge(Actions* actions);
  void StartLogout(Actions* actions);
  // Starts `phase` (a timing marker) and sends the command `verb` (a tag is put before it)
  // with `strings` as arguments after it, each quoted or as a literal (RFC 3501 4.3).
  void Begin(ImapPhase phase, Await await, std::string_view verb,
             const std::vector<std::string_view>& strings, Actions* actions);
  // Starts `phase` and sends `chunks` (tag included): the first now, each further one when
  // the server asks for it with a continuation request.
  void Send(ImapPhase phase, Await await, std::vector<std::string> chunks, Actions* actions);
  void FailResponse(ImapFailure kind, const ImapResponse& r, Actions* actions);
  // Ends the conversation. `say_logout` when the connection is still usable for LOGOUT.
  void Fail(ImapFailure kind, std::string detail, bool say_logout, Actions* actions);
  void Succeed(Actions* actions);
  std::string_view AwaitedName() const;

  ImapSessionOptions options_;
  ImapResponseParser parser_;
  ImapPhase phase_ = ImapPhase::kConnect;
  Await await_ = Await::kConnection;
  Await after_capability_ = Await::kNothing;  // what the CAPABILITY command leads to
  bool done_ = false;
  bool tls_active_ = false;
  bool authenticated_ = false;
  bool capabilities_known_ = false;
  bool fresh_capabilities_ = false;  // capabilities came with the command in flight
  bool plain_auth_ = false;          // the login is AUTHENTICATE PLAIN, not LOGIN
  ImapOutcome outcome_;
  std::string tag_;  // of the command in flight
  unsigned next_tag_ = 1;
  std::deque<std::string> chunks_;   // of the command in flight, each after a "+" from the server
  std::vector<std::uint32_t> hits_;  // UIDs the SEARCH returned
  std::vector<std::uint32_t> requested_;  // UIDs the FETCH asked for
};

}  // namespace mailpulse
