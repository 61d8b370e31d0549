// ImapSession: the client side of RFC 3501 (with STARTTLS, section 6.2.1; SASL-IR, RFC 4959;
// LITERAL+/-, RFC 7888; UIDPLUS, RFC 4315) as a state machine over events. One command is in
// flight at a time. Untagged responses may come at any time (RFC 3501 section 5.3), so data
// after a tagged response is normal, except after the OK to STARTTLS, where it would be
// plaintext injected ahead of the TLS handshake.
#include "probe/imap/imap_session.h"

#include <algorithm>
#include <array>
#include <utility>

#include "probe/imap/imap_text.h"
#include "probe/imap/probe_message.h"

namespace mailpulse {
namespace {

// How many SEARCH hits a confirmation fetches: a probe id names one message; more than this
// many substring matches is a mailbox problem, not a probe result.
constexpr std::size_t kMaxCandidates = 100;
// RFC 7888 section 4: LITERAL- allows non-synchronizing literals up to this size.
constexpr std::size_t kLiteralMinusMax = 4096;

constexpr std::array<std::string_view, kImapPhaseCount> kPhaseNames = {
    "dns",    "connect", "tls_handshake", "greeting", "capability", "starttls", "login",
    "select", "search",  "fetch",         "store",    "expunge",    "logout"};

// clang-format off
constexpr std::array<std::string_view, 17> kFailureNames = {
    "none", "dns_failure", "connection_refused", "connect_timeout", "timeout",
    "tls_handshake_failed", "certificate_invalid", "starttls_not_offered", "auth_not_offered",
    "auth_rejected", "mailbox_unavailable", "command_rejected", "server_bye", "server_closed",
    "protocol_violation", "invalid_options", "unknown"};
// clang-format on

}  // namespace

std::string_view ImapPhaseName(ImapPhase p) {
  const auto i = static_cast<std::size_t>(p);
  return i < kPhaseNames.size() ? kPhaseNames[i] : "unknown";
}

std::string_view ImapFailureName(ImapFailure f) {
  const auto i = static_cast<std::size_t>(f);
  return i + 1 < kFailureNames.size() ? kFailureNames[i] : kFailureNames.back();
}

ImapSession::ImapSession(ImapSessionOptions options)
    : options_(std::move(options)),
      parser_(options_.limits),
      tls_active_(options_.tls == ImapTlsMode::kImplicit) {
  options_.probe_id = ImapLower(options_.probe_id);
}

Status ImapSession::CheckOptions(const ImapSessionOptions& o) {
  if (!IsProbeId(o.probe_id)) {
    return Status::Error("'" + ImapPrintable(o.probe_id, 64) +
                         "' is not a probe id (32 hex digits)");
  }
  if (o.user.empty()) return Status::Error("no user name given");
  if (o.password.empty()) return Status::Error("no password given");
  if (o.mailbox.empty()) return Status::Error("no mailbox given");
  for (const std::string* s : {&o.user, &o.password, &o.mailbox}) {
    // RFC 3501 section 9: not even a literal may carry NUL; PLAIN uses it as the separator.
    if (s->find('\0') != std::string::npos)
      return Status::Error("a NUL in the user, password or mailbox");
  }
  return Status::Ok();
}

std::vector<ImapAction> ImapSession::OnConnected() {
  Actions actions;
  if (done_ || await_ != Await::kConnection) return actions;
  if (Status s = CheckOptions(options_); !s.ok()) {
    Fail(ImapFailure::kInvalidOptions, s.message(), false, &actions);
    return actions;
  }
  phase_ = ImapPhase::kGreeting;
  await_ = Await::kGreeting;
  actions.push_back({ImapAction::Kind::kPhaseStarted, "", ImapPhase::kGreeting});
  return actions;
}

std::vector<ImapAction> ImapSession::OnBytes(std::string_view data) {
  Actions actions;
  if (done_ || data.empty()) return actions;
  if (await_ == Await::kTlsHandshake || await_ == Await::kConnection) {
    Fail(ImapFailure::kProtocolViolation,
         await_ == Await::kConnection
             ? "data before the connection was up"
             : "server sent plaintext after its STARTTLS response, before the TLS handshake "
               "(possible command injection)",
         false, &actions);
    return actions;
  }
  std::vector<ImapResponse> responses;
  const Status status = parser_.Feed(data, &responses);
  for (std::size_t i = 0; i < responses.size() && !done_; ++i) {
    const bool more = i + 1 < responses.size() || parser_.buffered() > 0 || !status.ok();
    HandleResponse(responses[i], more, &actions);
  }
  if (!done_ && !status.ok()) {
    Fail(ImapFailure::kProtocolViolation, status.message(), false, &actions);
  }
  return actions;
}

std::vector<ImapAction> ImapSession::OnTlsEstablished() {
  Actions actions;
  if (done_ || await_ != Await::kTlsHandshake) return actions;
  // RFC 3501 section 6.2.1: what the server said in plaintext, capabilities included, is
  // forgotten; OnBytes refused anything buffered.
  parser_ = ImapResponseParser(options_.limits);
  tls_active_ = true;
  capabilities_known_ = false;
  outcome_.capabilities = ImapCapabilities{};
  Proceed(&actions);
  return actions;
}

std::vector<ImapAction> ImapSession::OnTlsFailed(ImapFailure kind, std::string_view reason) {
  Actions actions;
  if (done_) return actions;
  phase_ = ImapPhase::kTlsHandshake;
  if (kind == ImapFailure::kNone) kind = ImapFailure::kTlsHandshakeFailed;
  Fail(kind, std::string(reason), false, &actions);
  return actions;
}

std::vector<ImapAction> ImapSession::OnPeerClosed() {
  Actions actions;
  if (done_) return actions;
  if (await_ == Await::kLogout) {
    Succeed(&actions);  // the job was done before LOGOUT; its reply does not matter
    return actions;
  }
  Fail(ImapFailure::kServerClosed,
       "server closed the connection while the client waited for " + std::string(AwaitedName()),
       false, &actions);
  return actions;
}

std::vector<ImapAction> ImapSession::OnTimeout() {
  Actions actions;
  if (done_) return actions;
  if (await_ == Await::kLogout) {
    Succeed(&actions);
  } else if (await_ == Await::kConnection) {
    Fail(ImapFailure::kConnectTimeout, "connection not established in time", false, &actions);
  } else {
    Fail(ImapFailure::kTimeout, "no response to " + std::string(AwaitedName()) + " in time", false,
         &actions);
  }
  return actions;
}

void ImapSession::HandleResponse(const ImapResponse& r, bool more_buffered, Actions* actions) {
  if (r.kind == ImapResponse::Kind::kStatus && ImapUpper(r.code).starts_with("CAPABILITY ")) {
    std::vector<std::string_view> words = ImapWords(r.code);
    words.erase(words.begin());
    NoteCapabilities(words);
  }
  if (r.kind == ImapResponse::Kind::kContinuation) return HandleContinuation(r, actions);
  if (r.tagged()) return HandleTagged(r, more_buffered, actions);
  if (await_ == Await::kGreeting) return HandleGreeting(r, actions);
  HandleUntagged(r, actions);
}

void ImapSession::HandleUntagged(const ImapResponse& r, Actions* actions) {
  if (r.kind == ImapResponse::Kind::kStatus) {
    // RFC 3501 7.1.5: BYE during LOGOUT is the normal goodbye; before it, the server quits.
    if (r.status == "BYE" && await_ != Await::kLogout) {
      FailResponse(ImapFailure::kServerBye, r, actions);
    }
    return;  // untagged OK, NO and BAD are notices (UIDVALIDITY, warnings)
  }
  if (r.keyword == "CAPABILITY" && !r.number) {
    std::vector<std::string_view> words;
    for (const ImapValue& v : r.values) words.push_back(v.text);
    NoteCapabilities(words);
  } else if (r.keyword == "SEARCH" && !r.number && await_ == Await::kSearch) {
    HandleSearchData(r, actions);
  } else if (r.keyword == "FETCH" && r.number && await_ == Await::kFetch) {
    HandleFetchData(r, actions);
  }
  // Everything else (EXISTS, RECENT, FLAGS, EXPUNGE, other FETCHes) is not this job's.
}

void ImapSession::HandleGreeting(const ImapResponse& r, Actions* actions) {
  if (r.kind != ImapResponse::Kind::kStatus || r.status == "NO" || r.status == "BAD") {
    return Fail(ImapFailure::kProtocolViolation,
                "expected a greeting (OK, PREAUTH or BYE), got another response", false, actions);
  }
  if (r.status == "BYE") return FailResponse(ImapFailure::kServerBye, r, actions);
  capabilities_known_ = fresh_capabilities_;
  if (r.status == "PREAUTH") {
    authenticated_ = true;
    if (!tls_active_) {
      outcome_.server_text = r.StatusText();
      return Fail(ImapFailure::kStartTlsNotOffered,
                  "server pre-authenticated the plaintext connection, so STARTTLS is no longer "
                  "possible (RFC 3501 section 6.2.1)",
                  true, actions);
    }
  }
  Proceed(actions);
}

void ImapSession::HandleContinuation(const ImapResponse& r, Actions* actions) {
  if (chunks_.empty()) {
    return Fail(ImapFailure::kProtocolViolation,
                "unexpected continuation request \"+ " + ImapPrintable(r.text, 64) + "\" during " +
                    std::string(AwaitedName()),
                false, actions);
  }
  std::string chunk = std::move(chunks_.front());
  chunks_.pop_front();
  actions->push_back({ImapAction::Kind::kSend, std::move(chunk), phase_});
}

void ImapSession::HandleTagged(const ImapResponse& r, bool more_buffered, Actions* actions) {
  if (r.tag != tag_) {
    return Fail(ImapFailure::kProtocolViolation,
                "response tagged \"" + ImapPrintable(r.tag, 32) + "\" while " + tag_ + " (" +
                    std::string(AwaitedName()) + ") was in flight",
                false, actions);
  }
  const bool ok = r.status == "OK";
  if (ok && !chunks_.empty()) {
    return Fail(ImapFailure::kProtocolViolation,
                std::string(AwaitedName()) + " completed before all of it was sent", false,
                actions);
  }
  chunks_.clear();
  if (await_ == Await::kLogout) return Succeed(actions);
  if (!ok) {
    const ImapFailure kind = await_ == Await::kLogin    ? ImapFailure::kAuthRejected
                             : await_ == Await::kSelect ? ImapFailure::kMailboxUnavailable
                                                        : ImapFailure::kCommandRejected;
    return FailResponse(kind, r, actions);
  }
  switch (await_) {
    case Await::kCapability:
      capabilities_known_ = true;
      return Proceed(actions);
    case Await::kStartTls:
      if (more_buffered) {
        return Fail(ImapFailure::kProtocolViolation,
                    "server sent data after its STARTTLS response, before the TLS handshake "
                    "(possible command injection)",
                    false, actions);
      }
      phase_ = ImapPhase::kTlsHandshake;
      await_ = Await::kTlsHandshake;
      actions->push_back({ImapAction::Kind::kPhaseStarted, "", phase_});
      actions->push_back({ImapAction::Kind::kStartTls, "", phase_});
      return;
    case Await::kLogin:
      authenticated_ = true;
      capabilities_known_ = fresh_capabilities_;  // RFC 3501 6.2.3: they may change now
      return Proceed(actions);
    case Await::kSelect:
      return Begin(ImapPhase::kSearch, Await::kSearch, "UID SEARCH HEADER X-Mailpulse-Probe",
                   {"id=" + options_.probe_id}, actions);
    case Await::kSearch:
      return StartFetch(actions);
    case Await::kFetch:
      return AfterFetch(actions);
    case Await::kStore:
      return StartExpunge(actions);
    case Await::kExpunge:
      outcome_.deleted = outcome_.messages.size();
      return StartLogout(actions);
    default:
      return Fail(ImapFailure::kProtocolViolation, "tagged response with nothing in flight", false,
                  actions);
  }
}

void ImapSession::HandleSearchData(const ImapResponse& r, Actions* actions) {
  for (const ImapValue& v : r.values) {
    const std::optional<std::uint32_t> uid = v.Number();
    if (!uid || *uid == 0) {
      return Fail(ImapFailure::kProtocolViolation,
                  "SEARCH result \"" + ImapPrintable(v.text, 32) + "\" is not a UID", false,
                  actions);
    }
    hits_.push_back(*uid);
  }
}

// FETCHes of messages not asked for (a flag changed elsewhere) are ignored.
void ImapSession::HandleFetchData(const ImapResponse& r, Actions* actions) {
  StatusOr<std::optional<FetchedHeaders>> fetched = ReadFetchedHeaders(r);
  if (!fetched.ok()) {
    return Fail(ImapFailure::kProtocolViolation, fetched.status().message(), false, actions);
  }
  if (!*fetched ||
      std::find(requested_.begin(), requested_.end(), (*fetched)->uid) == requested_.end()) {
    return;
  }
  std::optional<ProbeMessage> m =
      ReadProbeMessage((*fetched)->uid, (*fetched)->header_section, options_.probe_id);
  const bool seen = std::any_of(outcome_.messages.begin(), outcome_.messages.end(),
                                [&](const ProbeMessage& x) { return x.uid == (*fetched)->uid; });
  if (m && !seen) outcome_.messages.push_back(std::move(*m));
}

void ImapSession::NoteCapabilities(const std::vector<std::string_view>& words) {
  ImapCapabilities c;
  for (const std::string_view word : words) {
    const std::string w = ImapUpper(word);
    c.imap4rev1 |= w == "IMAP4REV1";
    c.starttls |= w == "STARTTLS";
    c.login_disabled |= w == "LOGINDISABLED";
    c.auth_plain |= w == "AUTH=PLAIN";
    c.sasl_ir |= w == "SASL-IR";
    c.literal_plus |= w == "LITERAL+";
    c.literal_minus |= w == "LITERAL-";
    c.uidplus |= w == "UIDPLUS";
  }
  outcome_.capabilities = c;
  fresh_capabilities_ = true;
}

void ImapSession::Proceed(Actions* actions) {
  if (!capabilities_known_) {
    return Begin(ImapPhase::kCapability, Await::kCapability, "CAPABILITY", {}, actions);
  }
  if (authenticated_) {
    return Begin(ImapPhase::kSelect, Await::kSelect, "SELECT", {options_.mailbox}, actions);
  }
  if (options_.tls == ImapTlsMode::kStartTls && !tls_active_) {
    if (!outcome_.capabilities.starttls) {
      return Fail(ImapFailure::kStartTlsNotOffered, "server does not offer STARTTLS", true,
                  actions);
    }
    return Begin(ImapPhase::kStartTls, Await::kStartTls, "STARTTLS", {}, actions);
  }
  StartLogin(actions);
}

void ImapSession::StartLogin(Actions* actions) {
  const ImapCapabilities& c = outcome_.capabilities;
  plain_auth_ = options_.auth == ImapAuthMethod::kPlain ||
                (options_.auth == ImapAuthMethod::kAuto && c.auth_plain);
  if (plain_auth_ && !c.auth_plain) {
    return Fail(ImapFailure::kAuthNotOffered, "server does not offer AUTH=PLAIN", true, actions);
  }
  if (!plain_auth_ && c.login_disabled) {
    return Fail(ImapFailure::kAuthNotOffered,
                "server advertises LOGINDISABLED" +
                    std::string(options_.auth == ImapAuthMethod::kAuto ? " and no AUTH=PLAIN" : ""),
                true, actions);
  }
  if (!plain_auth_) {
    return Begin(ImapPhase::kLogin, Await::kLogin, "LOGIN", {options_.user, options_.password},
                 actions);
  }
  // RFC 4616: authorization identity (empty) NUL user NUL password.
  std::string credentials;
  credentials += '\0';
  credentials += options_.user;
  credentials += '\0';
  credentials += options_.password;
  const std::string response = ImapBase64Encode(credentials);
  tag_ = "mp" + std::to_string(next_tag_++);
  if (c.sasl_ir) {
    return Send(ImapPhase::kLogin, Await::kLogin,
                {tag_ + " AUTHENTICATE PLAIN " + response + "\r\n"}, actions);
  }
  Send(ImapPhase::kLogin, Await::kLogin, {tag_ + " AUTHENTICATE PLAIN\r\n", response + "\r\n"},
       actions);
}

void ImapSession::StartFetch(Actions* actions) {
  std::sort(hits_.begin(), hits_.end());
  hits_.erase(std::unique(hits_.begin(), hits_.end()), hits_.end());
  outcome_.candidates = hits_.size();
  if (hits_.empty()) return StartLogout(actions);  // not found
  requested_.assign(hits_.begin(), hits_.begin() + std::min(hits_.size(), kMaxCandidates));
  Begin(ImapPhase::kFetch, Await::kFetch,
        "UID FETCH " + ImapUidSet(requested_) +
            " (UID BODY.PEEK[HEADER.FIELDS (X-Mailpulse-Probe X-Mailpulse-Hop Date "
            "Message-ID)])",
        {}, actions);
}

void ImapSession::AfterFetch(Actions* actions) {
  std::sort(outcome_.messages.begin(), outcome_.messages.end(),
            [](const ProbeMessage& a, const ProbeMessage& b) { return a.uid < b.uid; });
  if (outcome_.messages.empty() || options_.keep) return StartLogout(actions);
  std::vector<std::uint32_t> uids;
  for (const ProbeMessage& m : outcome_.messages) uids.push_back(m.uid);
  Begin(ImapPhase::kStore, Await::kStore,
        "UID STORE " + ImapUidSet(uids) + " +FLAGS.SILENT (\\Deleted)", {}, actions);
}

// With UIDPLUS only the confirmed messages go; without it EXPUNGE removes every message
// flagged \Deleted in the mailbox, as any client's EXPUNGE would (docs/roundtrip.md).
void ImapSession::StartExpunge(Actions* actions) {
  std::vector<std::uint32_t> uids;
  for (const ProbeMessage& m : outcome_.messages) uids.push_back(m.uid);
  if (outcome_.capabilities.uidplus) {
    return Begin(ImapPhase::kExpunge, Await::kExpunge, "UID EXPUNGE " + ImapUidSet(uids), {},
                 actions);
  }
  Begin(ImapPhase::kExpunge, Await::kExpunge, "EXPUNGE", {}, actions);
}

void ImapSession::StartLogout(Actions* actions) {
  Begin(ImapPhase::kLogout, Await::kLogout, "LOGOUT", {}, actions);
}

void ImapSession::Begin(ImapPhase phase, Await await, std::string_view verb,
                        const std::vector<std::string_view>& strings, Actions* actions) {
  tag_ = "mp" + std::to_string(next_tag_++);
  const ImapCapabilities& c = outcome_.capabilities;
  std::vector<std::string> chunks;
  std::string current = tag_ + " " + std::string(verb);
  for (const std::string_view s : strings) {
    current += ' ';
    if (IsImapQuotable(s)) {
      current += QuoteImapString(s);
    } else if (c.literal_plus || (c.literal_minus && s.size() <= kLiteralMinusMax)) {
      current += "{" + std::to_string(s.size()) + "+}\r\n" + std::string(s);
    } else {  // a synchronizing literal: the rest waits for the server's "+"
      current += "{" + std::to_string(s.size()) + "}\r\n";
      chunks.push_back(std::move(current));
      current = std::string(s);
    }
  }
  chunks.push_back(current + "\r\n");
  Send(phase, await, std::move(chunks), actions);
}

void ImapSession::Send(ImapPhase phase, Await await, std::vector<std::string> chunks,
                       Actions* actions) {
  phase_ = phase;
  await_ = await;
  fresh_capabilities_ = false;
  actions->push_back({ImapAction::Kind::kPhaseStarted, "", phase});
  chunks_.assign(std::make_move_iterator(chunks.begin() + 1),
                 std::make_move_iterator(chunks.end()));
  actions->push_back({ImapAction::Kind::kSend, std::move(chunks.front()), phase});
}

void ImapSession::FailResponse(ImapFailure kind, const ImapResponse& r, Actions* actions) {
  outcome_.server_text = r.StatusText();
  Fail(kind, "", r.status != "BYE", actions);
}

void ImapSession::Fail(ImapFailure kind, std::string detail, bool say_logout, Actions* actions) {
  outcome_.success = false;
  outcome_.failure = kind;
  outcome_.phase = phase_;
  outcome_.detail = std::move(detail);
  done_ = true;
  await_ = Await::kNothing;
  chunks_.clear();
  if (say_logout) {
    actions->push_back(
        {ImapAction::Kind::kSend, "mp" + std::to_string(next_tag_++) + " LOGOUT\r\n", phase_});
  }
  actions->push_back({ImapAction::Kind::kClose, "", phase_});
}

void ImapSession::Succeed(Actions* actions) {
  outcome_.success = true;
  outcome_.failure = ImapFailure::kNone;
  outcome_.phase = ImapPhase::kLogout;
  done_ = true;
  await_ = Await::kNothing;
  actions->push_back({ImapAction::Kind::kClose, "", ImapPhase::kLogout});
}

std::string_view ImapSession::AwaitedName() const {
  if (await_ == Await::kLogin) return plain_auth_ ? "AUTHENTICATE" : "LOGIN";
  // In the order of Await.
  static constexpr std::array<std::string_view, 13> kNames = {
      "the connection", "the greeting", "CAPABILITY", "STARTTLS",  "the TLS handshake",
      "LOGIN",          "SELECT",       "UID SEARCH", "UID FETCH", "UID STORE",
      "EXPUNGE",        "LOGOUT",       "nothing"};
  const auto i = static_cast<std::size_t>(await_);
  return i < kNames.size() ? kNames[i] : "nothing";
}

}  // namespace mailpulse
