// SmtpSession: the client side of RFC 5321 (with RFC 3207 STARTTLS and RFC 4954 AUTH) as a
// state machine over events. One command is outstanding at a time (no PIPELINING), so any
// server data beyond the reply to that command is unsolicited and a protocol violation.
#include "probe/smtp/smtp_session.h"

#include <algorithm>
#include <utility>

#include "probe/smtp/smtp_text.h"

namespace mailpulse {

std::string_view PhaseName(Phase p) {
  switch (p) {
    case Phase::kDns:
      return "dns";
    case Phase::kConnect:
      return "connect";
    case Phase::kBanner:
      return "banner";
    case Phase::kEhlo:
      return "ehlo";
    case Phase::kStartTls:
      return "starttls";
    case Phase::kTlsHandshake:
      return "tls_handshake";
    case Phase::kAuth:
      return "auth";
    case Phase::kMail:
      return "mail";
    case Phase::kRcpt:
      return "rcpt";
    case Phase::kData:
      return "data";
    case Phase::kEndOfData:
      return "end_of_data";
    case Phase::kQuit:
      return "quit";
  }
  return "unknown";
}

std::string_view FailureKindName(FailureKind f) {
  switch (f) {
    case FailureKind::kNone:
      return "none";
    case FailureKind::kDnsFailure:
      return "dns_failure";
    case FailureKind::kConnectionRefused:
      return "connection_refused";
    case FailureKind::kConnectTimeout:
      return "connect_timeout";
    case FailureKind::kBannerTimeout:
      return "banner_timeout";
    case FailureKind::kTimeout:
      return "timeout";
    case FailureKind::kReplyTransient:
      return "reply_transient";
    case FailureKind::kReplyPermanent:
      return "reply_permanent";
    case FailureKind::kStartTlsNotOffered:
      return "starttls_not_offered";
    case FailureKind::kTlsHandshakeFailed:
      return "tls_handshake_failed";
    case FailureKind::kCertificateInvalid:
      return "certificate_invalid";
    case FailureKind::kAuthNotOffered:
      return "auth_not_offered";
    case FailureKind::kAuthRejected:
      return "auth_rejected";
    case FailureKind::kServerClosed:
      return "server_closed";
    case FailureKind::kProtocolViolation:
      return "protocol_violation";
    case FailureKind::kUncertain:
      return "uncertain";
  }
  return "unknown";
}

SmtpSession::SmtpSession(SessionOptions options)
    : options_(std::move(options)), tls_active_(options_.tls == TlsMode::kImplicit) {}

std::vector<Action> SmtpSession::OnConnected() {
  std::vector<Action> actions;
  if (done_ || await_ != Await::kConnection) return actions;
  phase_ = Phase::kBanner;
  await_ = Await::kBanner;
  actions.push_back(Action{Action::Kind::kPhaseStarted, "", Phase::kBanner});
  return actions;
}

std::vector<Action> SmtpSession::OnBytes(std::string_view data) {
  std::vector<Action> actions;
  if (done_ || data.empty()) return actions;
  if (await_ == Await::kTlsHandshake) {
    Fail(phase_, FailureKind::kProtocolViolation,
         "server sent plaintext after its STARTTLS reply, before the TLS handshake (RFC 3207 "
         "section 4.2: possible command injection)",
         nullptr, false, &actions);
    return actions;
  }
  if (await_ == Await::kConnection) {
    Fail(phase_, FailureKind::kProtocolViolation, "data before the connection was up", nullptr,
         false, &actions);
    return actions;
  }
  std::vector<SmtpReply> replies;
  const Status status = parser_.Feed(data, &replies);
  for (std::size_t i = 0; i < replies.size() && !done_; ++i) {
    // These bytes arrived before the client reacted to replies[i], so the server cannot have
    // been answering the command that reaction sends.
    const bool more = i + 1 < replies.size() || parser_.buffered() > 0 || !status.ok();
    if (!more) {
      HandleReply(replies[i], &actions);
    } else if (!status.ok()) {
      Fail(phase_, FailureKind::kProtocolViolation, status.message(), &replies[i], false, &actions);
    } else if (await_ == Await::kStartTls) {
      Fail(phase_, FailureKind::kProtocolViolation,
           "server sent data after its STARTTLS reply, before the TLS handshake (RFC 3207 "
           "section 4.2: possible command injection)",
           &replies[i], false, &actions);
    } else {
      Fail(phase_, FailureKind::kProtocolViolation,
           "server sent more than the reply to " + std::string(AwaitedReplyName()) +
               " (unsolicited data before the next command)",
           &replies[i], false, &actions);
    }
  }
  if (!done_ && !status.ok()) {
    Fail(phase_, FailureKind::kProtocolViolation, status.message(), nullptr, false, &actions);
  }
  return actions;
}

std::vector<Action> SmtpSession::OnTlsEstablished() {
  std::vector<Action> actions;
  if (done_ || await_ != Await::kTlsHandshake) return actions;
  // RFC 3207 section 4.2: forget everything learnt in plaintext, buffered bytes (OnBytes
  // already refused any) and capabilities alike, and start over with EHLO.
  parser_ = ReplyParser();
  tls_active_ = true;
  outcome_.capabilities = Capabilities{};
  StartEhlo(&actions);
  return actions;
}

std::vector<Action> SmtpSession::OnTlsFailed(FailureKind kind, std::string_view reason) {
  std::vector<Action> actions;
  if (done_) return actions;
  if (kind == FailureKind::kNone) kind = FailureKind::kTlsHandshakeFailed;
  Fail(Phase::kTlsHandshake, kind, std::string(reason), nullptr, false, &actions);
  return actions;
}

std::vector<Action> SmtpSession::OnPeerClosed() {
  std::vector<Action> actions;
  if (done_) return actions;
  if (await_ == Await::kQuit) {
    // The server may close without (or before we read) its 221: the check is complete.
    Succeed(&actions);
    return actions;
  }
  Fail(phase_, FailureKind::kServerClosed,
       "server closed the connection while the client waited for the reply to " +
           std::string(AwaitedReplyName()),
       nullptr, false, &actions);
  return actions;
}

std::vector<Action> SmtpSession::OnTimeout() {
  std::vector<Action> actions;
  if (done_) return actions;
  switch (await_) {
    case Await::kConnection:
      Fail(Phase::kConnect, FailureKind::kConnectTimeout, "connection not established in time",
           nullptr, false, &actions);
      break;
    case Await::kBanner:
      Fail(Phase::kBanner, FailureKind::kBannerTimeout, "no greeting in time", nullptr, false,
           &actions);
      break;
    case Await::kEndOfData:
      Fail(Phase::kEndOfData, FailureKind::kUncertain,
           "no reply to the end of the message data in time: it may have been queued", nullptr,
           false, &actions);
      break;
    default:
      Fail(phase_, FailureKind::kTimeout,
           "no reply to " + std::string(AwaitedReplyName()) + " in time", nullptr, false, &actions);
      break;
  }
  return actions;
}

void SmtpSession::HandleReply(const SmtpReply& reply, std::vector<Action>* actions) {
  outcome_.reply_codes[static_cast<std::size_t>(phase_)] = reply.code;
  switch (await_) {
    case Await::kBanner:
      return HandleBanner(reply, actions);
    case Await::kEhlo:
    case Await::kHelo:
      return HandleEhlo(reply, actions);
    case Await::kStartTls:
      return HandleStartTls(reply, actions);
    case Await::kAuthPlain:
    case Await::kAuthLoginStart:
    case Await::kAuthLoginUser:
    case Await::kAuthLoginPassword:
      return HandleAuth(reply, actions);
    case Await::kMail:
      if (reply.code / 100 != 2) return FailReply(reply, actions);
      next_rcpt_ = 0;
      if (options_.rcpt_to.empty()) return StartData(actions);
      return Begin(Phase::kRcpt, "RCPT TO:<" + options_.rcpt_to[0] + ">\r\n", Await::kRcpt,
                   actions);
    case Await::kRcpt:
      return HandleRcpt(reply, actions);
    case Await::kData:
      if (reply.code != 354) return FailReply(reply, actions);
      return Begin(Phase::kEndOfData, DotStuff(options_.message) + ".\r\n", Await::kEndOfData,
                   actions);
    case Await::kEndOfData:
      return HandleEndOfData(reply, actions);
    case Await::kQuit:
      if (reply.code / 100 != 2) return FailReply(reply, actions);
      return Succeed(actions);
    case Await::kConnection:
    case Await::kTlsHandshake:
    case Await::kNothing:
      break;
  }
  FailReply(reply, actions);
}

void SmtpSession::HandleBanner(const SmtpReply& reply, std::vector<Action>* actions) {
  if (reply.code != 220) return FailReply(reply, actions);
  StartEhlo(actions);
}

void SmtpSession::HandleEhlo(const SmtpReply& reply, std::vector<Action>* actions) {
  if (await_ == Await::kEhlo && (reply.code == 500 || reply.code == 502)) {
    // RFC 5321 3.2: a server without the extensions does not know EHLO; HELO still works.
    return Send("HELO " + options_.helo_name + "\r\n", Await::kHelo, actions);
  }
  if (reply.code / 100 != 2) return FailReply(reply, actions);
  outcome_.capabilities = Capabilities{};
  if (await_ == Await::kEhlo) outcome_.capabilities = ParseEhloCapabilities(reply);
  AfterGreeting(actions);
}

void SmtpSession::HandleStartTls(const SmtpReply& reply, std::vector<Action>* actions) {
  if (reply.code != 220) return FailReply(reply, actions);
  phase_ = Phase::kTlsHandshake;
  await_ = Await::kTlsHandshake;
  actions->push_back(Action{Action::Kind::kPhaseStarted, "", Phase::kTlsHandshake});
  actions->push_back(Action{Action::Kind::kStartTls, "", Phase::kTlsHandshake});
}

void SmtpSession::HandleAuth(const SmtpReply& reply, std::vector<Action>* actions) {
  if (reply.permanent()) {
    return Fail(Phase::kAuth, FailureKind::kAuthRejected, "", &reply, true, actions);
  }
  const bool final_step = await_ == Await::kAuthPlain || await_ == Await::kAuthLoginPassword;
  if (final_step && reply.code == 235) return AfterAuth(actions);
  if (!final_step && reply.code == 334) {
    // RFC 4954 4: the LOGIN mechanism prompts for the user name, then the password.
    if (await_ == Await::kAuthLoginStart) {
      return Send(Base64Encode(options_.auth_user) + "\r\n", Await::kAuthLoginUser, actions);
    }
    return Send(Base64Encode(options_.auth_password) + "\r\n", Await::kAuthLoginPassword, actions);
  }
  FailReply(reply, actions);
}

void SmtpSession::HandleRcpt(const SmtpReply& reply, std::vector<Action>* actions) {
  // A probe wants every recipient accepted; 251 and 252 (RFC 5321 3.4) count as accepted.
  if (reply.code / 100 != 2) return FailReply(reply, actions);
  ++next_rcpt_;
  if (next_rcpt_ < options_.rcpt_to.size()) {
    return Send("RCPT TO:<" + options_.rcpt_to[next_rcpt_] + ">\r\n", Await::kRcpt, actions);
  }
  StartData(actions);
}

void SmtpSession::HandleEndOfData(const SmtpReply& reply, std::vector<Action>* actions) {
  if (reply.code / 100 != 2) return FailReply(reply, actions);
  outcome_.queue_id = QueueIdFromReply(reply);
  StartQuit(actions);
}

void SmtpSession::AfterGreeting(std::vector<Action>* actions) {
  if (NeedsStartTls() && !tls_active_) {
    if (!outcome_.capabilities.starttls) {
      return Fail(Phase::kStartTls, FailureKind::kStartTlsNotOffered,
                  outcome_.capabilities.esmtp
                      ? "server did not offer STARTTLS in its EHLO reply"
                      : "server does not support EHLO, so it cannot offer STARTTLS",
                  nullptr, true, actions);
    }
    return Begin(Phase::kStartTls, "STARTTLS\r\n", Await::kStartTls, actions);
  }
  if (NeedsAuth()) return StartAuth(actions);
  AfterAuth(actions);
}

void SmtpSession::StartEhlo(std::vector<Action>* actions) {
  Begin(Phase::kEhlo, "EHLO " + options_.helo_name + "\r\n", Await::kEhlo, actions);
}

void SmtpSession::StartAuth(std::vector<Action>* actions) {
  const std::vector<std::string>& offered = outcome_.capabilities.auth_mechanisms;
  const auto has = [&offered](std::string_view m) {
    return std::find(offered.begin(), offered.end(), m) != offered.end();
  };
  if (has("PLAIN")) {
    // RFC 4616: authorization identity (empty) NUL user NUL password, as an initial response.
    std::string credentials;
    credentials += '\0';
    credentials += options_.auth_user;
    credentials += '\0';
    credentials += options_.auth_password;
    return Begin(Phase::kAuth, "AUTH PLAIN " + Base64Encode(credentials) + "\r\n",
                 Await::kAuthPlain, actions);
  }
  if (has("LOGIN")) return Begin(Phase::kAuth, "AUTH LOGIN\r\n", Await::kAuthLoginStart, actions);
  std::string detail = "server offers no AUTH mechanism the probe supports (PLAIN, LOGIN)";
  if (!offered.empty()) {
    detail += "; offered:";
    for (const std::string& m : offered) detail += " " + m;
  }
  Fail(Phase::kAuth, FailureKind::kAuthNotOffered, std::move(detail), nullptr, true, actions);
}

void SmtpSession::AfterAuth(std::vector<Action>* actions) {
  if (options_.kind != CheckKind::kSend) return StartQuit(actions);
  Begin(Phase::kMail, "MAIL FROM:<" + options_.mail_from + ">\r\n", Await::kMail, actions);
}

void SmtpSession::StartData(std::vector<Action>* actions) {
  Begin(Phase::kData, "DATA\r\n", Await::kData, actions);
}

void SmtpSession::StartQuit(std::vector<Action>* actions) {
  Begin(Phase::kQuit, "QUIT\r\n", Await::kQuit, actions);
}

void SmtpSession::Begin(Phase phase, std::string command, Await await,
                        std::vector<Action>* actions) {
  phase_ = phase;
  actions->push_back(Action{Action::Kind::kPhaseStarted, "", phase});
  Send(std::move(command), await, actions);
}

void SmtpSession::Send(std::string command, Await await, std::vector<Action>* actions) {
  await_ = await;
  actions->push_back(Action{Action::Kind::kSend, std::move(command), phase_});
}

void SmtpSession::FailReply(const SmtpReply& reply, std::vector<Action>* actions) {
  if (reply.transient() || reply.permanent()) {
    // RFC 5321 3.8: with 421 the server is closing the channel; QUIT would go nowhere. A
    // failed QUIT is not answered with another.
    const bool say_quit = reply.code != 421 && await_ != Await::kQuit;
    const FailureKind kind =
        reply.transient() ? FailureKind::kReplyTransient : FailureKind::kReplyPermanent;
    return Fail(phase_, kind, "", &reply, say_quit, actions);
  }
  Fail(phase_, FailureKind::kProtocolViolation,
       "unexpected " + std::to_string(reply.code) + " reply to " + std::string(AwaitedReplyName()),
       &reply, false, actions);
}

void SmtpSession::Fail(Phase phase, FailureKind kind, std::string detail, const SmtpReply* reply,
                       bool say_quit, std::vector<Action>* actions) {
  phase_ = phase;
  outcome_.success = false;
  outcome_.failure = kind;
  outcome_.phase = phase;
  if (reply != nullptr) outcome_.reply = *reply;
  outcome_.detail = std::move(detail);
  done_ = true;
  await_ = Await::kNothing;
  if (say_quit) actions->push_back(Action{Action::Kind::kSend, "QUIT\r\n", phase});
  actions->push_back(Action{Action::Kind::kClose, "", phase});
}

void SmtpSession::Succeed(std::vector<Action>* actions) {
  outcome_.success = true;
  outcome_.failure = FailureKind::kNone;
  outcome_.phase = Phase::kQuit;
  done_ = true;
  await_ = Await::kNothing;
  actions->push_back(Action{Action::Kind::kClose, "", Phase::kQuit});
}

bool SmtpSession::NeedsStartTls() const {
  return options_.tls == TlsMode::kStartTls && options_.kind != CheckKind::kConnect;
}

bool SmtpSession::NeedsAuth() const {
  return options_.kind == CheckKind::kAuth ||
         (options_.kind == CheckKind::kSend && !options_.auth_user.empty());
}

std::string_view SmtpSession::AwaitedReplyName() const {
  switch (await_) {
    case Await::kConnection:
      return "the connection";
    case Await::kBanner:
      return "the greeting";
    case Await::kEhlo:
      return "EHLO";
    case Await::kHelo:
      return "HELO";
    case Await::kStartTls:
      return "STARTTLS";
    case Await::kTlsHandshake:
      return "the TLS handshake";
    case Await::kAuthPlain:
    case Await::kAuthLoginStart:
    case Await::kAuthLoginUser:
    case Await::kAuthLoginPassword:
      return "AUTH";
    case Await::kMail:
      return "MAIL FROM";
    case Await::kRcpt:
      return "RCPT TO";
    case Await::kData:
      return "DATA";
    case Await::kEndOfData:
      return "the message data";
    case Await::kQuit:
      return "QUIT";
    case Await::kNothing:
      break;
  }
  return "nothing";
}

}  // namespace mailpulse
