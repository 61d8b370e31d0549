#include "milter/milter_callbacks.h"

#include <arpa/inet.h>
#include <libmilter/mfdef.h>
#include <netinet/in.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>

#include "milter/core/session_accounting.h"
#include "shared/clock.h"
#include "shared/frame_codec.h"
#include "shared/logging.h"

namespace mailpulse {
namespace {

const MilterContext* g_context = nullptr;

// Stages we do not need are switched off, so Postfix never sends them. Header and body are
// needed only to count bytes and always continue, so they are no-reply steps. Connect, HELO,
// MAIL and RCPT keep their replies: with no-reply there Postfix holds the events until DATA and
// sessions that never reach DATA lose them (see docs/architecture.md, "the no-reply trap").
// DATA is kept, with a reply, although we do nothing there: Postfix sends the DATA macros even
// to a milter that opted out of the stage, that packet then gets no reply, and over inet the
// milter's delayed ACK holds Postfix's next write behind Nagle for about 40 ms per message.
constexpr unsigned long kWantedSteps =
    SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_RCPT_REJ;
constexpr unsigned long kNoReplySteps = SMFIP_NR_HDR | SMFIP_NR_BODY;

// The no-reply steps the MTA granted. A no-reply callback must answer SMFIS_NOREPLY (libmilter
// logs an error for every other answer); Postfix and Sendmail grant both, so one process-wide
// value serves every connection.
std::atomic<unsigned long> g_no_reply_steps{0};

std::string_view Macro(SMFICTX* ctx, const char* name) {
  const char* v = smfi_getsymval(ctx, const_cast<char*>(name));
  return v == nullptr ? std::string_view() : std::string_view(v);
}

// What libmilter keeps for one MTA connection (smfi_setpriv): the traffic accounting and the
// probe inspection.
struct ConnectionState {
  ConnectionState(TrafficCounters* counters, const ClientClassifier* classifier,
                  const ProbePolicy* policy)
      : accounting(counters, classifier), inspector(policy) {}
  SessionAccounting accounting;
  ProbeInspector inspector;
  // For the spike detector, per message: the login, the sender's domain and a sample of the
  // accepted recipients' domains.
  std::string login;
  std::string sender_domain;
  std::vector<std::string> recipient_domains;
};

constexpr std::size_t kRecipientDomainSample = 5;

// "<Alice@Example.ORG>" (a MAIL or RCPT argument) -> "example.org"; "" without a domain.
std::string DomainOf(std::string_view address) {
  if (!address.empty() && address.front() == '<') address.remove_prefix(1);
  if (const std::size_t end = address.find('>'); end != std::string_view::npos) {
    address = address.substr(0, end);
  }
  const std::size_t at = address.rfind('@');
  if (at == std::string_view::npos) return "";
  std::string domain(address.substr(at + 1, 255));
  for (char& c : domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return domain;
}

ConnectionState* State(SMFICTX* ctx) { return static_cast<ConnectionState*>(smfi_getpriv(ctx)); }

bool ProbesOn() {
  return g_context != nullptr && g_context->probe != nullptr && g_context->probe->key != nullptr;
}

// The policy the inspector gets: with probe handling off, one whose key is null.
const ProbePolicy* Policy() {
  static const ProbePolicy kOff;
  return ProbesOn() ? g_context->probe : &kOff;
}

ClientEndpoint EndpointFrom(const sockaddr* addr) {
  ClientEndpoint e;
  if (addr == nullptr) return e;
  if (addr->sa_family == AF_INET) {
    sockaddr_in in;
    std::memcpy(&in, addr, sizeof in);
    std::uint8_t octets[4];
    std::memcpy(octets, &in.sin_addr, 4);
    e.address = IpAddress::FromIpv4(octets);
    e.port = ntohs(in.sin_port);
  } else if (addr->sa_family == AF_INET6) {
    sockaddr_in6 in6;
    std::memcpy(&in6, addr, sizeof in6);
    std::uint8_t octets[16];
    std::memcpy(octets, &in6.sin6_addr, 16);
    e.address = IpAddress::FromIpv6(octets);
    e.port = ntohs(in6.sin6_port);
  }
  return e;
}

// Runs `body` and turns any exception into one log line: nothing may cross into libmilter.
template <typename F>
sfsistat Guard(const char* stage, F&& body, sfsistat answer = SMFIS_CONTINUE) noexcept {
  try {
    body();
  } catch (const std::exception& e) {
    MP_LOG_ERROR("milter: internal error at %s: %s; continuing", stage, e.what());
  } catch (...) {
    MP_LOG_ERROR("milter: internal error at %s; continuing", stage);
  }
  return answer;
}

// The answer of a step that may have been negotiated as no-reply.
sfsistat AnswerFor(unsigned long no_reply_step) {
  return (g_no_reply_steps.load(std::memory_order_relaxed) & no_reply_step) != 0 ? SMFIS_NOREPLY
                                                                                 : SMFIS_CONTINUE;
}

extern "C" sfsistat OnNegotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1,
                                unsigned long /*f2*/, unsigned long /*f3*/, unsigned long* pf0,
                                unsigned long* pf1, unsigned long* pf2,
                                unsigned long* pf3) noexcept {
  // Header edits (the hop stamp, stripping invalid tokens) only when probes are handled.
  *pf0 = f0 & (SMFIF_SETSYMLIST | (ProbesOn() ? SMFIF_ADDHDRS | SMFIF_CHGHDRS : 0));
  *pf1 = f1 & kWantedSteps;
  g_no_reply_steps.store(*pf1 & kNoReplySteps, std::memory_order_relaxed);
  *pf2 = 0;
  *pf3 = 0;
  if ((f1 & SMFIP_RCPT_REJ) == 0) {
    MP_LOG_WARNING("milter: MTA does not offer SMFIP_RCPT_REJ; its own rejects are not counted");
  }
  if ((f0 & SMFIF_SETSYMLIST) != 0) {
    // Ask only for the macros we read; Postfix honours this and sends less per event.
    smfi_setsymlist(ctx, SMFIM_HELO, const_cast<char*>("{tls_version}"));
    smfi_setsymlist(ctx, SMFIM_ENVFROM, const_cast<char*>("{auth_authen} {tls_version}"));
    smfi_setsymlist(ctx, SMFIM_ENVRCPT, const_cast<char*>("{rcpt_mailer} {rcpt_host} {rcpt_addr}"));
    smfi_setsymlist(ctx, SMFIM_EOM, const_cast<char*>("i"));
  }
  return SMFIS_CONTINUE;
}

extern "C" sfsistat OnConnect(SMFICTX* ctx, char* /*hostname*/, _SOCK_ADDR* addr) noexcept {
  return Guard("connect", [&] {
    if (g_context == nullptr) return;
    auto state =
        std::make_unique<ConnectionState>(g_context->counters, g_context->classifier, Policy());
    state->accounting.OnConnect(EndpointFrom(addr));
    state->inspector.OnConnect(UnixMicros(), state->accounting.client_address());
    // The one owning hand-off to libmilter; reclaimed in OnClose.
    if (smfi_setpriv(ctx, state.get()) == MI_SUCCESS) state.release();
  });
}

extern "C" sfsistat OnHelo(SMFICTX* ctx, char* /*helo*/) noexcept {
  return Guard("helo", [&] {
    if (ConnectionState* state = State(ctx)) {
      const std::string_view tls_version = Macro(ctx, "{tls_version}");
      state->accounting.OnHelo(tls_version);
      if (!tls_version.empty()) state->inspector.OnTls(true);
    }
  });
}

extern "C" sfsistat OnEnvFrom(SMFICTX* ctx, char** argv) noexcept {
  bool throttled = false;
  const sfsistat answer = Guard("mail", [&] {
    ConnectionState* state = State(ctx);
    if (state == nullptr) return;
    const std::string_view tls_version = Macro(ctx, "{tls_version}");
    state->login = std::string(Macro(ctx, "{auth_authen}"));
    state->accounting.OnMail(state->login, tls_version);
    state->inspector.OnMail(UnixMicros());
    if (!tls_version.empty()) state->inspector.OnTls(true);
    state->sender_domain = argv != nullptr && argv[0] != nullptr ? DomainOf(argv[0]) : "";
    state->recipient_domains.clear();
    SpikeWatch* spikes = g_context->spikes;
    if (spikes == nullptr || state->accounting.direction() != Direction::kOutbound) return;
    if (std::optional<std::string> text =
            spikes->Throttle(state->login, state->accounting.client_address(), state->sender_domain,
                             MonotonicSeconds())) {
      throttled = smfi_setreply(ctx, const_cast<char*>("451"), const_cast<char*>("4.7.1"),
                                text->data()) == MI_SUCCESS;
      MP_LOG_WARNING("milter: client=%s login=%s: throttled at MAIL: %s",
                     state->accounting.client_address().c_str(),
                     state->login.empty() ? "-" : state->login.c_str(), text->c_str());
    }
  });
  return throttled ? SMFIS_TEMPFAIL : answer;
}

extern "C" sfsistat OnEnvRcpt(SMFICTX* ctx, char** argv) noexcept {
  return Guard("rcpt", [&] {
    ConnectionState* state = State(ctx);
    if (state == nullptr) return;
    SessionAccounting* s = &state->accounting;
    auto reject = s->OnRcpt(Macro(ctx, "{rcpt_mailer}"), Macro(ctx, "{rcpt_host}"),
                            Macro(ctx, "{rcpt_addr}"));
    if (!reject && argv != nullptr && argv[0] != nullptr) {
      state->inspector.OnRcpt(argv[0]);
      std::vector<std::string>& sample = state->recipient_domains;
      if (sample.size() < kRecipientDomainSample) {
        std::string domain = DomainOf(argv[0]);
        if (!domain.empty() && std::find(sample.begin(), sample.end(), domain) == sample.end()) {
          sample.push_back(std::move(domain));
        }
      }
    }
    if (reject) {
      const std::string_view stage = RejectStageName(reject->stage);
      MP_LOG_DEBUG("milter: client=%s reject stage=%.*s status=%.*s", s->client_address().c_str(),
                   static_cast<int>(stage.size()), stage.data(),
                   static_cast<int>(reject->status.size()), reject->status.data());
    }
  });
}

extern "C" sfsistat OnHeader(SMFICTX* ctx, char* name, char* value) noexcept {
  return Guard(
      "header",
      [&] {
        if (ConnectionState* state = State(ctx)) {
          const std::string_view n = name == nullptr ? "" : name;
          const std::string_view v = value == nullptr ? "" : value;
          state->accounting.OnHeader(n, v);
          state->inspector.OnHeader(n, v);
        }
      },
      AnswerFor(SMFIP_NR_HDR));
}

extern "C" sfsistat OnBody(SMFICTX* ctx, unsigned char* chunk, size_t length) noexcept {
  return Guard(
      "body",
      [&] {
        ConnectionState* state = State(ctx);
        if (state == nullptr) return;
        state->accounting.OnBody(length);
        // Only a DSN to a probe return path is kept; every other body is only counted.
        if (chunk != nullptr && state->inspector.WantsBody()) {
          state->inspector.OnBody(std::string_view(reinterpret_cast<const char*>(chunk), length));
        }
      },
      AnswerFor(SMFIP_NR_BODY));
}

extern "C" sfsistat OnData(SMFICTX* /*ctx*/) noexcept { return SMFIS_CONTINUE; }

// Carries out the inspector's verdict: header edits, events, counts, one log line per probe.
// Returns true when the message is to be discarded.
bool ApplyProbeVerdict(SMFICTX* ctx, std::string_view qid, ProbeVerdict& v) {
  const ProbeCounters& c = g_context->probe_counters;
  if (v.invalid != TokenProblem::kNone) {
    const std::string_view reason = TokenProblemName(v.invalid);
    if (c.tokens_invalid != nullptr) c.tokens_invalid->WithLabels({reason}).Inc();
    MP_LOG_WARNING("%.*s: milter: probe token invalid (%.*s); not a probe",
                   static_cast<int>(qid.size()), qid.data(), static_cast<int>(reason.size()),
                   reason.data());
  }
  for (const HeaderEdit& e : v.edits) {
    const int rc = e.kind == HeaderEdit::Kind::kInsertFirst
                       ? smfi_insheader(ctx, 0, const_cast<char*>(e.name.c_str()),
                                        const_cast<char*>(e.value.c_str()))
                       : smfi_chgheader(ctx, const_cast<char*>(e.name.c_str()), e.index, nullptr);
    if (rc != MI_SUCCESS) {
      MP_LOG_WARNING("%.*s: milter: could not edit header %s", static_cast<int>(qid.size()),
                     qid.data(), e.name.c_str());
    }
  }
  proto::Event event;
  if (v.sighting) {
    if (c.sightings != nullptr) c.sightings->Inc();
    if (v.sighting->delivered() && c.deliveries != nullptr) c.deliveries->Inc();
    MP_LOG_INFO("%.*s: milter: probe %s from %s seen%s", static_cast<int>(qid.size()), qid.data(),
                v.sighting->probe_id().c_str(), v.sighting->probe_source().c_str(),
                v.discard                 ? ", delivered to a sink and discarded"
                : v.sighting->delivered() ? ", delivered to a sink"
                                          : "");
    *event.mutable_hop_sighting() = std::move(*v.sighting);
  } else if (v.bounce) {
    if (c.bounces != nullptr) c.bounces->Inc();
    MP_LOG_INFO("%.*s: milter: bounce of probe %s (%d recipients)", static_cast<int>(qid.size()),
                qid.data(), v.bounce->probe_id().c_str(), v.bounce->recipients_size());
    *event.mutable_probe_bounce() = std::move(*v.bounce);
  }
  if (event.kind_case() != proto::Event::KIND_NOT_SET && g_context->post_event) {
    std::string frame;
    AppendEventFrame(event, &frame);
    g_context->post_event(std::move(frame));
  }
  return v.discard;
}

extern "C" sfsistat OnEndOfMessage(SMFICTX* ctx) noexcept {
  bool discard = false;
  const sfsistat answer = Guard("eom", [&] {
    ConnectionState* state = State(ctx);
    if (state == nullptr) return;
    SessionAccounting* s = &state->accounting;
    const MessageSummary m = s->OnEndOfMessage();
    std::string_view qid = Macro(ctx, "i");
    if (qid.empty()) qid = "NOQUEUE";
    ProbeVerdict verdict = state->inspector.OnEndOfMessage(UnixMicros(), qid);
    discard = ApplyProbeVerdict(ctx, qid, verdict);
    // Mail handed to sendmail(1) is outbound too: a compromised web application sends that way.
    if (g_context->spikes != nullptr &&
        (m.direction == Direction::kOutbound || m.direction == Direction::kLocal)) {
      OutboundMessage out;
      out.sasl_login = state->login;
      out.client_ip = s->client_address();
      out.sender_domain = state->sender_domain;
      out.recipients = static_cast<std::uint32_t>(std::min<std::uint64_t>(m.recipients, 1u << 30));
      out.recipient_domains.assign(state->recipient_domains.begin(),
                                   state->recipient_domains.end());
      g_context->spikes->OnMessage(out, MonotonicSeconds());
    }
    const std::string_view direction = DirectionName(m.direction);
    MP_LOG_INFO("%.*s: milter: direction=%.*s client=%s tls=%s auth=%s nrcpt=%llu size=%llu",
                static_cast<int>(qid.size()), qid.data(), static_cast<int>(direction.size()),
                direction.data(), s->client_address().c_str(), m.tls ? "yes" : "no",
                m.authenticated ? "yes" : "no", static_cast<unsigned long long>(m.recipients),
                static_cast<unsigned long long>(m.bytes));
  });
  return discard ? SMFIS_DISCARD : answer;
}

extern "C" sfsistat OnAbort(SMFICTX* ctx) noexcept {
  return Guard("abort", [&] {
    if (ConnectionState* state = State(ctx)) {
      state->accounting.OnAbort();
      state->inspector.OnAbort();
    }
  });
}

extern "C" sfsistat OnClose(SMFICTX* ctx) noexcept {
  return Guard("close", [&] {
    // Reclaims what OnConnect handed to libmilter; the destructor counts the connection.
    std::unique_ptr<ConnectionState> state(State(ctx));
    smfi_setpriv(ctx, nullptr);
  });
}

}  // namespace

void SetMilterContext(const MilterContext* context) { g_context = context; }

smfiDesc MakeFilterDescription(bool edits_headers) {
  smfiDesc d{};
  d.xxfi_name = const_cast<char*>("mailpulse");
  d.xxfi_version = SMFI_VERSION;
  d.xxfi_flags = SMFIF_SETSYMLIST | (edits_headers ? SMFIF_ADDHDRS | SMFIF_CHGHDRS : 0);
  d.xxfi_connect = OnConnect;
  d.xxfi_helo = OnHelo;
  d.xxfi_envfrom = OnEnvFrom;
  d.xxfi_envrcpt = OnEnvRcpt;
  d.xxfi_header = OnHeader;
  d.xxfi_body = OnBody;
  d.xxfi_eom = OnEndOfMessage;
  d.xxfi_abort = OnAbort;
  d.xxfi_close = OnClose;
  d.xxfi_data = OnData;
  d.xxfi_negotiate = OnNegotiate;
  return d;
}

}  // namespace mailpulse
