// ImapConfirmer on a real loopback socket (port 0) and its CLI report: the glue's own
// verdicts — refused, a server that never speaks, a TLS handshake that never finishes — the
// callback called once from the loop, cancel on destroy; and the imap-find report and exit
// codes. Everything a real server does is tested against Dovecot (test_probe_imap.py).
#include "probe/imap_confirmer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>

#include "probe/imap_command.h"
#include "shared/libevent_ptr.h"

namespace mailpulse {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kId[] = "0123456789abcdef0123456789abcdef";

// A loopback listener that accepts nothing: connects complete (the backlog takes them) and
// then nothing is ever said. Closed on destruction.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), len), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

ImapOptions Options(std::uint16_t port, ImapTlsMode tls) {
  ImapOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.tls = tls;
  o.verify_certificate = false;
  o.user = "probe";
  o.password = "secret";
  o.probe_id = kId;
  o.phase_timeout_seconds = 0.2;
  o.overall_timeout_seconds = 5;
  return o;
}

class ImapConfirmerTest : public ::testing::Test {
 protected:
  ImapConfirmerTest() : base_(event_base_new()) {
    StatusOr<SslCtxPtr> ctx = NewClientTlsContext("", false);
    EXPECT_TRUE(ctx.ok());
    if (ctx.ok()) tls_ = std::move(*ctx);
  }

  ImapResult RunToEnd(const ImapOptions& options) {
    int calls = 0;
    std::optional<ImapResult> result;
    ImapConfirmer confirmer(base_.get(), nullptr, tls_.get(), options, [&](ImapResult r) {
      ++calls;
      result = std::move(r);
    });
    confirmer.Start();
    EXPECT_EQ(calls, 0) << "called back from within Start";
    event_base_dispatch(base_.get());  // ends when nothing is left to wait for
    EXPECT_EQ(calls, 1);
    return result.value_or(ImapResult{});
  }

  EventBasePtr base_;
  SslCtxPtr tls_;
};

TEST_F(ImapConfirmerTest, RefusedPortIsConnectionRefused) {
  std::uint16_t port = 0;
  { port = SilentListener().port(); }  // closed again: nobody listens there now
  const ImapResult r = RunToEnd(Options(port, ImapTlsMode::kImplicit));
  EXPECT_EQ(r.outcome.failure, ImapFailure::kConnectionRefused);
  EXPECT_EQ(r.outcome.phase, ImapPhase::kConnect);
  EXPECT_THAT(r.outcome.detail, HasSubstr("refused"));
}

TEST_F(ImapConfirmerTest, SilentServerTimesOutAtTheGreeting) {
  SilentListener server;
  const ImapResult r = RunToEnd(Options(server.port(), ImapTlsMode::kStartTls));
  EXPECT_EQ(r.outcome.failure, ImapFailure::kTimeout);
  EXPECT_EQ(r.outcome.phase, ImapPhase::kGreeting);
  EXPECT_EQ(r.outcome.detail, "no response to the greeting in time");
  EXPECT_GE(r.phase_seconds[static_cast<std::size_t>(ImapPhase::kGreeting)], 0.2);
}

TEST_F(ImapConfirmerTest, SilentServerTimesOutInTheImplicitTlsHandshake) {
  SilentListener server;
  const ImapResult r = RunToEnd(Options(server.port(), ImapTlsMode::kImplicit));
  EXPECT_EQ(r.outcome.failure, ImapFailure::kTimeout);
  EXPECT_EQ(r.outcome.phase, ImapPhase::kTlsHandshake);
  EXPECT_THAT(r.outcome.detail, HasSubstr("no TLS handshake within 0.2s"));
}

TEST_F(ImapConfirmerTest, InvalidOptionsFailBeforeConnecting) {
  ImapOptions o = Options(1, ImapTlsMode::kImplicit);
  o.probe_id = "xyz";
  const ImapResult r = RunToEnd(o);
  EXPECT_EQ(r.outcome.failure, ImapFailure::kInvalidOptions);
  EXPECT_TRUE(r.address.empty());
}

TEST_F(ImapConfirmerTest, DestroyedConfirmerNeverCallsBack) {
  SilentListener server;
  bool called = false;
  {
    ImapConfirmer confirmer(base_.get(), nullptr, tls_.get(),
                            Options(server.port(), ImapTlsMode::kStartTls),
                            [&](ImapResult) { called = true; });
    confirmer.Start();
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  }
  event_base_dispatch(base_.get());  // returns at once: no timer, no socket left
  EXPECT_FALSE(called);
}

ImapResult FoundResult() {
  ImapResult r;
  r.outcome.success = true;
  r.outcome.candidates = 2;
  r.outcome.deleted = 1;
  ProbeMessage m;
  m.uid = 7;
  m.probe_header = std::string("v=1; id=") + kId + "; t=1";
  m.hop_stamps = {"hop=mx1; t=1; qid=A", "hop=mx2; t=2; qid=B"};
  m.date = "Mon, 10 Jun 2024 12:00:00 +0000";
  m.message_id = "<x@y>";
  r.outcome.messages.push_back(m);
  r.total_seconds = 0.0123;
  return r;
}

TEST(ImapFindReportTest, FoundPrintsTheTrailInHeaderOrder) {
  const ImapResult r = FoundResult();
  EXPECT_EQ(ImapFindExitCode(r), kImapFindFound);
  EXPECT_EQ(FormatImapFindReport(r, kId, "INBOX at 127.0.0.1:993", false),
            std::string("FOUND probe ") + kId +
                " in INBOX at 127.0.0.1:993: 1 message, deleted (0.012s)\n"
                "message uid 7\n  Message-ID: <x@y>\n  Date: Mon, 10 Jun 2024 12:00:00 +0000\n"
                "  X-Mailpulse-Probe: v=1; id=" +
                kId +
                "; t=1\n  X-Mailpulse-Hop: hop=mx1; t=1; qid=A\n"
                "  X-Mailpulse-Hop: hop=mx2; t=2; qid=B\n");
}

TEST(ImapFindReportTest, NotFoundAndErrorsHaveTheirExitCodes) {
  ImapResult r;
  r.outcome.success = true;
  r.outcome.candidates = 1;
  EXPECT_EQ(ImapFindExitCode(r), kImapFindNotFound);
  EXPECT_THAT(FormatImapFindReport(r, kId, "INBOX at h:993", false),
              HasSubstr("NOT FOUND probe " + std::string(kId) + " in INBOX at h:993 (1 search"));
  r.outcome.success = false;
  r.outcome.failure = ImapFailure::kAuthRejected;
  r.outcome.phase = ImapPhase::kLogin;
  r.outcome.server_text = "NO [AUTHENTICATIONFAILED] Authentication failed.";
  EXPECT_EQ(ImapFindExitCode(r), kImapFindError);
  EXPECT_THAT(FormatImapFindReport(r, kId, "INBOX at h:993", false),
              HasSubstr("ERROR auth_rejected at login: NO [AUTHENTICATIONFAILED] Authentication "
                        "failed. (INBOX at h:993"));
}

TEST(ImapFindReportTest, HostileHeaderTextStaysOnOneLine) {
  ImapResult r = FoundResult();
  r.outcome.messages[0].hop_stamps = {"hop=x\r\nFOUND forged\x1b[2J"};
  const std::string report = FormatImapFindReport(r, kId, "INBOX at h:993", true);
  EXPECT_THAT(report, Not(HasSubstr("\nFOUND forged")));
  EXPECT_THAT(report, Not(HasSubstr("\x1b")));
}

}  // namespace
}  // namespace mailpulse
