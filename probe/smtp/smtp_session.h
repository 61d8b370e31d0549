// SmtpSession: one SMTP client conversation as a sans-IO state machine (no socket, no clock,
// no TLS library). The glue feeds it events — connected, bytes received, TLS established,
// peer closed, timed out — and carries out the actions it returns: send these bytes, start a
// TLS handshake, close. It walks the phases banner → EHLO (HELO fallback) → [STARTTLS → TLS →
// EHLO] → [AUTH] → [MAIL → RCPT… → DATA → message → end of data] → QUIT and ends with a
// CheckOutcome that names the exact failure: the phase, the server's reply (code, enhanced
// code, text), or the protocol violation. Timing is the glue's job: it stamps the
// Action::kPhaseStarted markers the session emits.
// Not thread-safe; one instance per check.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "probe/smtp/smtp_reply.h"

namespace mailpulse {

enum class TlsMode { kNone, kStartTls, kImplicit };

enum class CheckKind {
  kConnect,  // banner + EHLO + QUIT
  kTls,      // + STARTTLS (or implicit TLS) and certificate facts
  kAuth,     // + AUTH
  kSend,     // + MAIL/RCPT/DATA of a small message
};

// The phases of a check, in order. Names (PhaseName) are the `phase` metric label values.
enum class Phase {
  kDns,
  kConnect,
  kBanner,
  kEhlo,
  kStartTls,  // the STARTTLS command and its reply
  kTlsHandshake,
  kAuth,
  kMail,
  kRcpt,
  kData,       // the DATA command and its 354
  kEndOfData,  // message sent, waiting for the final reply
  kQuit,
};
inline constexpr int kPhaseCount = 12;
std::string_view PhaseName(Phase p);

enum class FailureKind {
  kNone,
  kDnsFailure,
  kConnectionRefused,
  kConnectTimeout,
  kBannerTimeout,
  kTimeout,         // a reply did not come in time (phase says where)
  kReplyTransient,  // 4xx at a phase (reply says which)
  kReplyPermanent,  // 5xx at a phase
  kStartTlsNotOffered,
  kTlsHandshakeFailed,  // detail: OpenSSL's reason
  kCertificateInvalid,  // detail: expired, wrong name, untrusted ...
  kAuthNotOffered,      // no AUTH mechanism we support (PLAIN, LOGIN)
  kAuthRejected,        // 535 and friends
  kServerClosed,        // the server closed the connection mid-conversation
  kProtocolViolation,   // garbage, over-long line, unexpected reply
  kUncertain,           // a timeout after the message data was sent: it may have been queued
};
std::string_view FailureKindName(FailureKind f);  // "reply_permanent", "tls_handshake_failed", ...

struct Capabilities {
  bool esmtp = false;  // EHLO accepted (false: HELO fallback)
  bool starttls = false;
  bool pipelining = false;
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  std::optional<unsigned long long> size;    // SIZE parameter, when given
  std::vector<std::string> auth_mechanisms;  // upper-case
};

struct SessionOptions {
  CheckKind kind = CheckKind::kConnect;
  TlsMode tls = TlsMode::kNone;
  std::string helo_name = "localhost";
  std::string auth_user;      // for kAuth/kSend when non-empty
  std::string auth_password;  // never logged
  std::string mail_from;      // without angle brackets; "" is the null sender
  std::vector<std::string> rcpt_to;
  // The message for kSend: header and body, lines ending in LF or CRLF. The session converts
  // to CRLF and dot-stuffs (RFC 5321 4.5.2); a clean place for the probe token header is the
  // caller's: it builds this text.
  std::string message;
};

struct Action {
  enum class Kind {
    kSend,          // write `bytes` to the connection
    kStartTls,      // begin the TLS handshake now; then call OnTlsEstablished or OnTlsFailed
    kClose,         // close the connection; the check is over (see outcome())
    kPhaseStarted,  // a timing marker: `phase` starts now (the previous one ends)
  };
  Kind kind;
  std::string bytes;
  Phase phase = Phase::kConnect;
};

struct CheckOutcome {
  bool success = false;
  FailureKind failure = FailureKind::kNone;
  Phase phase = Phase::kConnect;   // where it failed (or the last phase, on success)
  std::optional<SmtpReply> reply;  // the server's reply at that phase, when there was one
  std::string detail;              // human-readable reason for non-reply failures
  Capabilities capabilities;
  std::string queue_id;  // from the final 250 ("queued as X"), when given
  // The code of the last reply the server gave in each phase (indexed by Phase; 0: none).
  std::array<int, kPhaseCount> reply_codes{};
};

class SmtpSession {
 public:
  explicit SmtpSession(SessionOptions options);

  // The TCP connection is up (for implicit TLS: the TLS handshake is done, too).
  std::vector<Action> OnConnected();
  std::vector<Action> OnBytes(std::string_view data);
  std::vector<Action> OnTlsEstablished();
  std::vector<Action> OnTlsFailed(FailureKind kind, std::string_view reason);
  std::vector<Action> OnPeerClosed();
  // The glue's per-phase or overall deadline passed.
  std::vector<Action> OnTimeout();

  Phase phase() const { return phase_; }
  bool done() const { return done_; }
  const CheckOutcome& outcome() const { return outcome_; }

 private:
  // Implementation-defined; the implementer owns everything below.

  // What the session waits for next; finer than Phase (HELO, the AUTH LOGIN prompts).
  enum class Await {
    kConnection,
    kBanner,
    kEhlo,
    kHelo,
    kStartTls,
    kTlsHandshake,
    kAuthPlain,
    kAuthLoginStart,     // "AUTH LOGIN" sent, waiting for the user name prompt
    kAuthLoginUser,      // user name sent, waiting for the password prompt
    kAuthLoginPassword,  // password sent, waiting for 235
    kMail,
    kRcpt,
    kData,
    kEndOfData,
    kQuit,
    kNothing,  // done
  };

  void HandleReply(const SmtpReply& reply, std::vector<Action>* actions);
  void HandleBanner(const SmtpReply& reply, std::vector<Action>* actions);
  void HandleEhlo(const SmtpReply& reply, std::vector<Action>* actions);
  void HandleStartTls(const SmtpReply& reply, std::vector<Action>* actions);
  void HandleAuth(const SmtpReply& reply, std::vector<Action>* actions);
  void HandleRcpt(const SmtpReply& reply, std::vector<Action>* actions);
  void HandleEndOfData(const SmtpReply& reply, std::vector<Action>* actions);
  // The next step once EHLO/HELO succeeded: STARTTLS, AUTH, MAIL or QUIT.
  void AfterGreeting(std::vector<Action>* actions);
  void StartEhlo(std::vector<Action>* actions);
  void StartAuth(std::vector<Action>* actions);
  void AfterAuth(std::vector<Action>* actions);
  void StartData(std::vector<Action>* actions);
  void StartQuit(std::vector<Action>* actions);
  // Starts `phase` (a timing marker) and sends `command` in it.
  void Begin(Phase phase, std::string command, Await await, std::vector<Action>* actions);
  void Send(std::string command, Await await, std::vector<Action>* actions);
  // A reply the current step did not expect: 4xx transient, 5xx permanent, otherwise a
  // protocol violation.
  void FailReply(const SmtpReply& reply, std::vector<Action>* actions);
  // Ends the check. `say_quit` when the connection is still usable for a polite QUIT.
  void Fail(Phase phase, FailureKind kind, std::string detail, const SmtpReply* reply,
            bool say_quit, std::vector<Action>* actions);
  void Succeed(std::vector<Action>* actions);
  bool NeedsStartTls() const;
  bool NeedsAuth() const;
  std::string_view AwaitedReplyName() const;

  SessionOptions options_;
  ReplyParser parser_;
  Phase phase_ = Phase::kConnect;
  bool done_ = false;
  CheckOutcome outcome_;
  Await await_ = Await::kConnection;
  bool tls_active_ = false;  // STARTTLS done, or implicit TLS
  std::size_t next_rcpt_ = 0;
};

}  // namespace mailpulse
