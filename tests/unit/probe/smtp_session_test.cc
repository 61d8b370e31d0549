// SmtpSession: scripted server transcripts replayed at every byte split, and each failure
// class with the exact phase, reply and client bytes it must produce.
#include "probe/smtp/smtp_session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mailpulse {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kBanner[] = "220 mx.example.org ESMTP Postfix\r\n";
constexpr char kEhlo[] = "EHLO probe.example.net\r\n";
constexpr char kQuit[] = "QUIT\r\n";
constexpr char kBye[] = "221 2.0.0 Bye\r\n";
constexpr char kEhloPlain[] =
    "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
    "250 SMTPUTF8\r\n";
constexpr char kEhloStartTls[] = "250-mx.example.org\r\n250-STARTTLS\r\n250 8BITMIME\r\n";
constexpr char kEhloAuth[] = "250-mx.example.org\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n";

// One server turn of a scripted conversation and the client's exact answer to it.
struct Turn {
  std::string server;
  std::string client;
  bool tls = false;  // the client must start TLS after this turn; the driver completes it
};

// Everything a replay observed, flattened to one string so that two replays compare with a
// readable diff.
struct Replay {
  std::vector<std::string> sent;  // client bytes per turn; [0] is the answer to OnConnected
  std::vector<bool> tls;          // whether the client asked for TLS after each turn
  std::vector<std::string> phases;
  int closes = 0;
  bool reacted_early = false;  // the client acted before a turn's last byte arrived
  CheckOutcome outcome;

  std::string Summary() const {
    std::string s = "sent:";
    for (const std::string& b : sent) s += " [" + b + "]";
    s += "\ntls:";
    for (bool t : tls) s += t ? " 1" : " 0";
    s += "\nphases:";
    for (const std::string& p : phases) s += " " + p;
    s += "\ncloses: " + std::to_string(closes) + (reacted_early ? " early" : "");
    s += "\nsuccess: " + std::to_string(outcome.success) + " " +
         std::string(FailureKindName(outcome.failure)) + " at " +
         std::string(PhaseName(outcome.phase));
    s += "\nreply: " + (outcome.reply ? outcome.reply->ToString() : "none");
    s += "\ndetail: " + outcome.detail + "\nqueue id: " + outcome.queue_id;
    return s;
  }
};

void Record(const std::vector<Action>& actions, Replay* r) {
  for (const Action& a : actions) {
    switch (a.kind) {
      case Action::Kind::kSend:
        r->sent.back() += a.bytes;
        break;
      case Action::Kind::kStartTls:
        r->tls.back() = true;
        break;
      case Action::Kind::kClose:
        ++r->closes;
        break;
      case Action::Kind::kPhaseStarted:
        r->phases.emplace_back(PhaseName(a.phase));
        break;
    }
  }
}

// Replays `turns`, cutting turn `cut_turn` at `cut` (0: no cut; npos: one byte at a time).
Replay Run(const SessionOptions& options, const std::vector<Turn>& turns, std::size_t cut_turn = 0,
           std::size_t cut = 0) {
  SmtpSession session(options);
  Replay r;
  r.sent.emplace_back();
  r.tls.push_back(false);
  Record(session.OnConnected(), &r);
  for (std::size_t t = 0; t < turns.size(); ++t) {
    r.sent.emplace_back();
    r.tls.push_back(false);
    std::vector<std::string_view> pieces;
    const std::string_view bytes = turns[t].server;
    if (cut == std::string::npos) {
      for (std::size_t i = 0; i < bytes.size(); ++i) pieces.push_back(bytes.substr(i, 1));
    } else if (t == cut_turn && cut > 0) {
      pieces = {bytes.substr(0, cut), bytes.substr(cut)};
    } else {
      pieces = {bytes};
    }
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const std::vector<Action> actions = session.OnBytes(pieces[i]);
      if (i + 1 < pieces.size() && !actions.empty()) r.reacted_early = true;
      Record(actions, &r);
    }
    if (r.tls.back()) Record(session.OnTlsEstablished(), &r);
  }
  r.outcome = session.outcome();
  return r;
}

// Replays the script whole, then one byte at a time and cut at every position of every turn;
// every replay must send exactly the scripted client bytes and end the same way.
Replay ReplayAtEverySplit(const SessionOptions& options, const std::vector<Turn>& turns) {
  const Replay whole = Run(options, turns);
  EXPECT_EQ(whole.sent[0], "");
  for (std::size_t t = 0; t < turns.size(); ++t) {
    EXPECT_EQ(whole.sent[t + 1], turns[t].client) << "after server turn " << t;
    EXPECT_EQ(whole.tls[t + 1], turns[t].tls) << "after server turn " << t;
  }
  EXPECT_EQ(whole.closes, 1);
  EXPECT_FALSE(whole.reacted_early);
  const std::string expected = whole.Summary();
  EXPECT_EQ(Run(options, turns, 0, std::string::npos).Summary(), expected) << "byte by byte";
  for (std::size_t t = 0; t < turns.size() && !::testing::Test::HasFailure(); ++t) {
    for (std::size_t cut = 1; cut < turns[t].server.size(); ++cut) {
      EXPECT_EQ(Run(options, turns, t, cut).Summary(), expected)
          << "turn " << t << " cut at " << cut;
      if (::testing::Test::HasFailure()) break;
    }
  }
  return whole;
}

SessionOptions Options(CheckKind kind, TlsMode tls = TlsMode::kNone) {
  SessionOptions o;
  o.kind = kind;
  o.tls = tls;
  o.helo_name = "probe.example.net";
  o.mail_from = "probe@example.net";
  o.rcpt_to = {"sink@example.org"};
  o.message = "Subject: probe\n\nhello\n";
  return o;
}

SessionOptions AuthOptions(std::string user = "probe", std::string password = "secret") {
  SessionOptions o = Options(CheckKind::kAuth);
  o.auth_user = std::move(user);
  o.auth_password = std::move(password);
  return o;
}

std::string Sent(const std::vector<Action>& actions) {
  std::string bytes;
  for (const Action& a : actions) {
    if (a.kind == Action::Kind::kSend) bytes += a.bytes;
  }
  return bytes;
}

bool Closes(const std::vector<Action>& actions) {
  return !actions.empty() && actions.back().kind == Action::Kind::kClose;
}

// A session that has been greeted and has answered EHLO with `ehlo`.
void Greet(SmtpSession& s, std::string_view ehlo) {
  (void)s.OnConnected();
  ASSERT_EQ(Sent(s.OnBytes(kBanner)), kEhlo);
  (void)s.OnBytes(ehlo);
}

// A kSend session (options with one recipient) whose last command was "MAIL", "RCPT" or
// "DATA".
void SendUntil(SmtpSession& s, std::string_view command) {
  Greet(s, kEhloPlain);
  if (command == "MAIL") return;
  (void)s.OnBytes("250 2.1.0 Ok\r\n");
  if (command == "RCPT") return;
  (void)s.OnBytes("250 2.1.5 Ok\r\n");
}

// The DATA payload the session sends for `message`.
std::string Payload(std::string message) {
  SessionOptions o = Options(CheckKind::kSend);
  o.message = std::move(message);
  SmtpSession s(o);
  SendUntil(s, "DATA");
  return Sent(s.OnBytes("354 End data with <CR><LF>.<CR><LF>\r\n"));
}

TEST(SmtpSessionTest, ConnectCheckGreetsAndQuitsAtEveryByteSplit) {
  const Replay r = ReplayAtEverySplit(Options(CheckKind::kConnect),
                                      {{kBanner, kEhlo}, {kEhloPlain, kQuit}, {kBye, ""}});
  EXPECT_TRUE(r.outcome.success);
  EXPECT_EQ(r.outcome.failure, FailureKind::kNone);
  EXPECT_EQ(r.outcome.phase, Phase::kQuit);
  EXPECT_THAT(r.phases, ElementsAre("banner", "ehlo", "quit"));
  EXPECT_TRUE(r.outcome.capabilities.esmtp);
}

TEST(SmtpSessionTest, SendCheckWithStartTlsAndAuthWalksEveryPhaseAtEveryByteSplit) {
  SessionOptions o = Options(CheckKind::kSend, TlsMode::kStartTls);
  o.auth_user = "probe";
  o.auth_password = "secret";
  o.rcpt_to = {"sink@example.org", "sink2@example.org"};
  const Replay r = ReplayAtEverySplit(
      o, {{kBanner, kEhlo},
          {kEhloStartTls, "STARTTLS\r\n"},
          {"220 2.0.0 Ready to start TLS\r\n", kEhlo, true},
          {kEhloAuth, "AUTH PLAIN AHByb2JlAHNlY3JldA==\r\n"},
          {"235 2.7.0 Authentication successful\r\n", "MAIL FROM:<probe@example.net>\r\n"},
          {"250 2.1.0 Ok\r\n", "RCPT TO:<sink@example.org>\r\n"},
          {"250 2.1.5 Ok\r\n", "RCPT TO:<sink2@example.org>\r\n"},
          {"250 2.1.5 Ok\r\n", "DATA\r\n"},
          {"354 End data with <CR><LF>.<CR><LF>\r\n", "Subject: probe\r\n\r\nhello\r\n.\r\n"},
          {"250 2.0.0 Ok: queued as 4Xb1Z23kqPz9sH\r\n", kQuit},
          {kBye, ""}});
  EXPECT_TRUE(r.outcome.success);
  EXPECT_EQ(r.outcome.queue_id, "4Xb1Z23kqPz9sH");
  EXPECT_THAT(r.phases, ElementsAre("banner", "ehlo", "starttls", "tls_handshake", "ehlo", "auth",
                                    "mail", "rcpt", "data", "end_of_data", "quit"));
}

TEST(SmtpSessionTest, RemembersTheLastReplyCodeOfEveryPhase) {
  SessionOptions o = Options(CheckKind::kSend, TlsMode::kStartTls);
  o.auth_user = "probe";
  o.auth_password = "secret";
  o.rcpt_to = {"sink@example.org", "nobody@example.org"};
  const Replay r = ReplayAtEverySplit(
      o, {{kBanner, kEhlo},
          {kEhloStartTls, "STARTTLS\r\n"},
          {"220 2.0.0 Ready to start TLS\r\n", kEhlo, true},
          {kEhloAuth, "AUTH PLAIN AHByb2JlAHNlY3JldA==\r\n"},
          {"235 2.7.0 Authentication successful\r\n", "MAIL FROM:<probe@example.net>\r\n"},
          {"250 2.1.0 Ok\r\n", "RCPT TO:<sink@example.org>\r\n"},
          {"250 2.1.5 Ok\r\n", "RCPT TO:<nobody@example.org>\r\n"},
          {"550 5.1.1 <nobody@example.org>: unknown\r\n", kQuit}});
  EXPECT_FALSE(r.outcome.success);
  const auto code = [&r](Phase p) { return r.outcome.reply_codes[static_cast<std::size_t>(p)]; };
  EXPECT_EQ(code(Phase::kBanner), 220);
  EXPECT_EQ(code(Phase::kEhlo), 250);
  EXPECT_EQ(code(Phase::kStartTls), 220);
  EXPECT_EQ(code(Phase::kAuth), 235);
  EXPECT_EQ(code(Phase::kMail), 250);
  EXPECT_EQ(code(Phase::kRcpt), 550);  // the last recipient's
  EXPECT_EQ(code(Phase::kData), 0);    // never reached
  EXPECT_EQ(code(Phase::kQuit), 0);    // after a failure QUIT goes out unanswered
  EXPECT_EQ(code(Phase::kConnect), 0);
}

TEST(SmtpSessionTest, PostscreenMultilineGreetingIsOneBannerAtEveryByteSplit) {
  const Replay r = ReplayAtEverySplit(
      Options(CheckKind::kConnect),
      {{"220-mx.example.org ESMTP\r\n220-please wait\r\n220 mx.example.org ESMTP\r\n", kEhlo},
       {kEhloPlain, kQuit},
       {kBye, ""}});
  EXPECT_TRUE(r.outcome.success);
}

TEST(SmtpSessionTest, EhloNotRecognizedFallsBackToHeloAtEveryByteSplit) {
  const Replay r =
      ReplayAtEverySplit(Options(CheckKind::kConnect),
                         {{kBanner, kEhlo},
                          {"500 5.5.1 Command unrecognized\r\n", "HELO probe.example.net\r\n"},
                          {"250 mx.example.org\r\n", kQuit},
                          {kBye, ""}});
  EXPECT_TRUE(r.outcome.success);
  EXPECT_FALSE(r.outcome.capabilities.esmtp);
  EXPECT_THAT(r.phases, ElementsAre("banner", "ehlo", "quit"));
}

TEST(SmtpSessionTest, EhloNotImplementedFallsBackToHelo) {
  SmtpSession s(Options(CheckKind::kConnect));
  Greet(s, "502 5.5.2 Error: command not implemented\r\n");
  EXPECT_EQ(Sent(s.OnBytes("250 ok\r\n")), kQuit);
}

TEST(SmtpSessionTest, AuthLoginAnswersBothPromptsInBase64AtEveryByteSplit) {
  const Replay r =
      ReplayAtEverySplit(AuthOptions(), {{kBanner, kEhlo},
                                         {"250-mx\r\n250 AUTH LOGIN\r\n", "AUTH LOGIN\r\n"},
                                         {"334 VXNlcm5hbWU6\r\n", "cHJvYmU=\r\n"},
                                         {"334 UGFzc3dvcmQ6\r\n", "c2VjcmV0\r\n"},
                                         {"235 2.7.0 Authentication successful\r\n", kQuit},
                                         {kBye, ""}});
  EXPECT_TRUE(r.outcome.success);
}

TEST(SmtpSessionTest, RecipientRejectedKeepsTheReplyTextAtEveryByteSplit) {
  const Replay r = ReplayAtEverySplit(
      Options(CheckKind::kSend), {{kBanner, kEhlo},
                                  {kEhloPlain, "MAIL FROM:<probe@example.net>\r\n"},
                                  {"250 2.1.0 Ok\r\n", "RCPT TO:<sink@example.org>\r\n"},
                                  {"550-5.1.1 <sink@example.org>: Recipient address rejected:\r\n"
                                   "550 5.1.1 User unknown in local recipient table\r\n",
                                   kQuit}});
  EXPECT_EQ(r.outcome.failure, FailureKind::kReplyPermanent);
  EXPECT_EQ(r.outcome.phase, Phase::kRcpt);
  ASSERT_TRUE(r.outcome.reply.has_value());
  EXPECT_EQ(r.outcome.reply->code, 550);
  EXPECT_EQ(r.outcome.reply->enhanced_code, "5.1.1");
  EXPECT_EQ(r.outcome.reply->ToString(),
            "550 5.1.1 <sink@example.org>: Recipient address rejected: / 5.1.1 User unknown in "
            "local recipient table");
}

// A conversation that must end in one failure class, whichever way its bytes are split.
struct FailureCase {
  std::string name;
  SessionOptions options;
  std::vector<Turn> turns;
  FailureKind failure;
  Phase phase;
  int reply_code;      // 0: the outcome carries no reply
  std::string detail;  // a part of the detail
};

void PrintTo(const FailureCase& c, std::ostream* os) { *os << c.name; }

std::vector<Turn> Then(std::vector<Turn> turns, const std::vector<Turn>& more) {
  turns.insert(turns.end(), more.begin(), more.end());
  return turns;
}

std::vector<FailureCase> FailureCases() {
  using enum FailureKind;
  const SessionOptions connect = Options(CheckKind::kConnect);
  const SessionOptions starttls = Options(CheckKind::kTls, TlsMode::kStartTls);
  const SessionOptions send = Options(CheckKind::kSend);
  SessionOptions two_rcpts = send;
  two_rcpts.rcpt_to = {"a@example.org", "b@example.org"};
  const std::vector<Turn> greeted = {{kBanner, kEhlo}};
  const std::vector<Turn> mail = Then(greeted, {{kEhloPlain, "MAIL FROM:<probe@example.net>\r\n"}});
  const std::vector<Turn> data = Then(mail, {{"250 2.1.0 Ok\r\n", "RCPT TO:<sink@example.org>\r\n"},
                                             {"250 2.1.5 Ok\r\n", "DATA\r\n"}});
  const std::string plain = "AUTH PLAIN AHByb2JlAHNlY3JldA==\r\n";
  return {
      {"ServiceNotAvailableAtBannerClosesWithoutQuit",
       connect,
       {{"421 4.3.2 mx.example.org busy\r\n", ""}},
       kReplyTransient,
       Phase::kBanner,
       421,
       ""},
      {"PermanentRejectionAtBannerIsAnsweredWithQuit",
       connect,
       {{"554 5.7.1 Service unavailable\r\n", kQuit}},
       kReplyPermanent,
       Phase::kBanner,
       554,
       ""},
      {"UnexpectedGreetingCodeIsAProtocolViolation",
       connect,
       {{"250 hello\r\n", ""}},
       kProtocolViolation,
       Phase::kBanner,
       250,
       "unexpected 250 reply to the greeting"},
      {"GarbageIsAProtocolViolationWithTheParserMessage",
       connect,
       {{"SSH-2.0-OpenSSH_9.2\r\n", ""}},
       kProtocolViolation,
       Phase::kBanner,
       0,
       "malformed reply line \"SSH-2.0-OpenSSH_9.2\""},
      {"ContinuationWithAnotherCodeIsAProtocolViolation", connect,
       Then(greeted, {{"250-mx\r\n251 PIPELINING\r\n", ""}}), kProtocolViolation, Phase::kEhlo, 0,
       "continues a 250 reply"},
      {"EhloTransientFailureIsReplyTransientAtEhlo", connect,
       Then(greeted, {{"451 4.3.0 try later\r\n", kQuit}}), kReplyTransient, Phase::kEhlo, 451, ""},
      {"EhloRefusedForPolicyDoesNotFallBackToHelo", connect,
       Then(greeted, {{"550 5.7.1 go away\r\n", kQuit}}), kReplyPermanent, Phase::kEhlo, 550, ""},
      {"HeloRejectedFailsAtEhlo", connect,
       Then(greeted,
            {{"500 unknown\r\n", "HELO probe.example.net\r\n"}, {"501 5.5.2 bad name\r\n", kQuit}}),
       kReplyPermanent, Phase::kEhlo, 501, ""},
      {"StartTlsNotOfferedFailsAtStartTlsAfterQuit", starttls, Then(greeted, {{kEhloPlain, kQuit}}),
       kStartTlsNotOffered, Phase::kStartTls, 0, "did not offer STARTTLS"},
      {"StartTlsIsNotOfferedAfterHeloFallback", starttls,
       Then(greeted, {{"502 no\r\n", "HELO probe.example.net\r\n"}, {"250 mx\r\n", kQuit}}),
       kStartTlsNotOffered, Phase::kStartTls, 0, "does not support EHLO"},
      {"StartTlsRefusedWith454IsTransientAtStartTls", starttls,
       Then(greeted, {{kEhloStartTls, "STARTTLS\r\n"}, {"454 4.7.0 TLS not available\r\n", kQuit}}),
       kReplyTransient, Phase::kStartTls, 454, ""},
      {"AuthRejectedWith535IsAuthRejected", AuthOptions(),
       Then(greeted, {{kEhloAuth, plain}, {"535 5.7.8 Error: authentication failed\r\n", kQuit}}),
       kAuthRejected, Phase::kAuth, 535, ""},
      {"AuthLoginRejectedAfterThePasswordIsAuthRejected", AuthOptions(),
       Then(greeted, {{"250-mx\r\n250 AUTH=LOGIN\r\n", "AUTH LOGIN\r\n"},
                      {"334 VXNlcm5hbWU6\r\n", "cHJvYmU=\r\n"},
                      {"334 UGFzc3dvcmQ6\r\n", "c2VjcmV0\r\n"},
                      {"535 5.7.8 nope\r\n", kQuit}}),
       kAuthRejected, Phase::kAuth, 535, ""},
      {"AuthTransientFailureIsReplyTransientAtAuth", AuthOptions(),
       Then(greeted,
            {{kEhloAuth, plain}, {"454 4.7.0 Temporary authentication failure\r\n", kQuit}}),
       kReplyTransient, Phase::kAuth, 454, ""},
      {"OnlyUnsupportedAuthMechanismsAreAuthNotOffered", AuthOptions(),
       Then(greeted, {{"250-mx\r\n250 AUTH CRAM-MD5 GSSAPI\r\n", kQuit}}), kAuthNotOffered,
       Phase::kAuth, 0, "offered: CRAM-MD5 GSSAPI"},
      {"NoAuthAtAllIsAuthNotOffered", AuthOptions(), Then(greeted, {{kEhloPlain, kQuit}}),
       kAuthNotOffered, Phase::kAuth, 0, "(PLAIN, LOGIN)"},
      {"MailFromTransientFailureIsReplyTransientAtMail", send,
       Then(mail, {{"451 4.3.0 Temporary lookup failure\r\n", kQuit}}), kReplyTransient,
       Phase::kMail, 451, ""},
      {"UnexpectedPositiveReplyIsAProtocolViolation", send, Then(mail, {{"354 go ahead\r\n", ""}}),
       kProtocolViolation, Phase::kMail, 354, "unexpected 354 reply to MAIL FROM"},
      {"SecondRecipientRejectedFailsTheCheck", two_rcpts,
       Then(mail, {{"250 2.1.0 Ok\r\n", "RCPT TO:<a@example.org>\r\n"},
                   {"250 2.1.5 Ok\r\n", "RCPT TO:<b@example.org>\r\n"},
                   {"450 4.2.0 <b@example.org>: greylisted\r\n", kQuit}}),
       kReplyTransient, Phase::kRcpt, 450, ""},
      {"DataRejectedIsReplyPermanentAtData", send,
       Then(data, {{"554 5.5.1 Error: no valid recipients\r\n", kQuit}}), kReplyPermanent,
       Phase::kData, 554, ""},
      {"MessageRejectedAfterDataIsReplyTransientAtEndOfData", send,
       Then(data, {{"354 go ahead\r\n", "Subject: probe\r\n\r\nhello\r\n.\r\n"},
                   {"451 4.7.1 milter says later\r\n", kQuit}}),
       kReplyTransient, Phase::kEndOfData, 451, ""},
      {"QuitRefusedFailsAtQuitWithoutAnotherQuit", connect,
       Then(greeted, {{kEhloPlain, kQuit}, {"500 what\r\n", ""}}), kReplyPermanent, Phase::kQuit,
       500, ""},
  };
}

class SmtpSessionFailureTest : public ::testing::TestWithParam<FailureCase> {};

TEST_P(SmtpSessionFailureTest, EndsAsScriptedAtEveryByteSplit) {
  const FailureCase& c = GetParam();
  const Replay r = ReplayAtEverySplit(c.options, c.turns);
  EXPECT_FALSE(r.outcome.success);
  EXPECT_EQ(FailureKindName(r.outcome.failure), FailureKindName(c.failure));
  EXPECT_EQ(PhaseName(r.outcome.phase), PhaseName(c.phase));
  EXPECT_EQ(r.outcome.reply ? r.outcome.reply->code : 0, c.reply_code);
  EXPECT_THAT(r.outcome.detail, HasSubstr(c.detail));
}

std::string CaseName(const ::testing::TestParamInfo<FailureCase>& param) {
  return param.param.name;
}

INSTANTIATE_TEST_SUITE_P(EachFailureClass, SmtpSessionFailureTest,
                         ::testing::ValuesIn(FailureCases()), CaseName);

TEST(SmtpSessionTest, PlaintextAfterTheStartTlsReplyInTheSameReadIsAnInjection) {
  for (std::string_view extra : {"250 injected\r\n", "2", "garbage\r\n"}) {
    SmtpSession s(Options(CheckKind::kTls, TlsMode::kStartTls));
    Greet(s, kEhloStartTls);
    const std::vector<Action> actions = s.OnBytes("220 go ahead\r\n" + std::string(extra));
    EXPECT_THAT(actions, ::testing::Each(::testing::Field(&Action::kind,
                                                          ::testing::Ne(Action::Kind::kStartTls))));
    EXPECT_TRUE(Closes(actions));
    EXPECT_EQ(Sent(actions), "");
    EXPECT_EQ(s.outcome().failure, FailureKind::kProtocolViolation) << extra;
    EXPECT_EQ(s.outcome().phase, Phase::kStartTls);
  }
}

TEST(SmtpSessionTest, PlaintextArrivingBeforeTheHandshakeIsAnInjection) {
  SmtpSession s(Options(CheckKind::kTls, TlsMode::kStartTls));
  Greet(s, kEhloStartTls);
  (void)s.OnBytes("220 go ahead\r\n");
  const std::vector<Action> actions = s.OnBytes("250-evil\r\n");
  EXPECT_TRUE(Closes(actions));
  EXPECT_EQ(s.outcome().failure, FailureKind::kProtocolViolation);
  EXPECT_THAT(s.outcome().detail, HasSubstr("RFC 3207"));
  EXPECT_THAT(s.OnTlsEstablished(), IsEmpty());
}

TEST(SmtpSessionTest, CapabilitiesLearntBeforeStartTlsAreForgotten) {
  SessionOptions o = AuthOptions();
  o.tls = TlsMode::kStartTls;
  SmtpSession tls(o);
  Greet(tls, "250-mx\r\n250-STARTTLS\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n");
  (void)tls.OnBytes("220 go\r\n");
  EXPECT_EQ(Sent(tls.OnTlsEstablished()), kEhlo);
  EXPECT_EQ(Sent(tls.OnBytes("250-mx\r\n250 AUTH LOGIN\r\n")), "AUTH LOGIN\r\n");
  EXPECT_FALSE(tls.outcome().capabilities.starttls);
  EXPECT_FALSE(tls.outcome().capabilities.pipelining);
  EXPECT_THAT(tls.outcome().capabilities.auth_mechanisms, ElementsAre("LOGIN"));
}

TEST(SmtpSessionTest, ConnectCheckIgnoresStartTls) {
  SmtpSession s(Options(CheckKind::kConnect, TlsMode::kStartTls));
  Greet(s, kEhloStartTls);
  EXPECT_EQ(s.phase(), Phase::kQuit);
}

TEST(SmtpSessionTest, ImplicitTlsNeverSaysStartTls) {
  SmtpSession s(Options(CheckKind::kTls, TlsMode::kImplicit));
  (void)s.OnConnected();
  (void)s.OnBytes(kBanner);
  EXPECT_EQ(Sent(s.OnBytes(kEhloStartTls)), kQuit);
}

TEST(SmtpSessionTest, TlsHandshakeFailureIsReportedWithTheReason) {
  SmtpSession s(Options(CheckKind::kTls, TlsMode::kStartTls));
  Greet(s, kEhloStartTls);
  (void)s.OnBytes("220 go\r\n");
  const std::vector<Action> actions =
      s.OnTlsFailed(FailureKind::kTlsHandshakeFailed, "wrong version number");
  EXPECT_EQ(Sent(actions), "");
  EXPECT_TRUE(Closes(actions));
  EXPECT_EQ(s.outcome().failure, FailureKind::kTlsHandshakeFailed);
  EXPECT_EQ(s.outcome().phase, Phase::kTlsHandshake);
  EXPECT_EQ(s.outcome().detail, "wrong version number");
}

TEST(SmtpSessionTest, InvalidCertificateIsReportedAsSuch) {
  SmtpSession s(Options(CheckKind::kTls, TlsMode::kStartTls));
  Greet(s, kEhloStartTls);
  (void)s.OnBytes("220 go\r\n");
  (void)s.OnTlsFailed(FailureKind::kCertificateInvalid, "certificate has expired");
  EXPECT_EQ(s.outcome().failure, FailureKind::kCertificateInvalid);
  EXPECT_EQ(s.outcome().phase, Phase::kTlsHandshake);
}

TEST(SmtpSessionTest, AuthPlainSendsNulUserNulPasswordInBase64) {
  SmtpSession s(AuthOptions("user", "pass"));
  (void)s.OnConnected();
  (void)s.OnBytes(kBanner);
  EXPECT_EQ(Sent(s.OnBytes(kEhloAuth)), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
}

TEST(SmtpSessionTest, AuthPlainIsPreferredOverLoginInAnyOrder) {
  SmtpSession s(AuthOptions("user", "pass"));
  (void)s.OnConnected();
  (void)s.OnBytes(kBanner);
  EXPECT_EQ(Sent(s.OnBytes("250-mx\r\n250 AUTH CRAM-MD5 LOGIN plain\r\n")),
            "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
}

TEST(SmtpSessionTest, Base64IsPaddedForEveryRemainderAndUsesTheFullAlphabet) {
  const std::pair<std::string, std::string> cases[] = {
      {"a", "YQ=="}, {"ab", "YWI="}, {"abc", "YWJj"}, {"\xfb\xff", "+/8="}, {"", ""}};
  for (const auto& [plain, encoded] : cases) {
    SmtpSession s(AuthOptions(plain, plain));
    Greet(s, "250-mx\r\n250 AUTH LOGIN\r\n");
    EXPECT_EQ(Sent(s.OnBytes("334 VXNlcm5hbWU6\r\n")), encoded + "\r\n");
    EXPECT_EQ(Sent(s.OnBytes("334 UGFzc3dvcmQ6\r\n")), encoded + "\r\n");
  }
}

TEST(SmtpSessionTest, SendCheckWithoutCredentialsSkipsAuth) {
  SmtpSession s(Options(CheckKind::kSend));
  (void)s.OnConnected();
  (void)s.OnBytes(kBanner);
  EXPECT_EQ(Sent(s.OnBytes(kEhloAuth)), "MAIL FROM:<probe@example.net>\r\n");
}

TEST(SmtpSessionTest, NullSenderIsEmptyAngleBrackets) {
  SessionOptions o = Options(CheckKind::kSend);
  o.mail_from = "";
  SmtpSession s(o);
  (void)s.OnConnected();
  (void)s.OnBytes(kBanner);
  EXPECT_EQ(Sent(s.OnBytes(kEhloPlain)), "MAIL FROM:<>\r\n");
}

TEST(SmtpSessionTest, MessageLinesGetCrlfEndings) {
  EXPECT_EQ(Payload("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n.\r\n");
  EXPECT_EQ(Payload("\n\n"), "\r\n\r\n.\r\n");
}

TEST(SmtpSessionTest, LinesStartingWithADotGetAnotherDot) {
  EXPECT_EQ(Payload(".hidden\n..two\nmid.dot\n"), "..hidden\r\n...two\r\nmid.dot\r\n.\r\n");
}

TEST(SmtpSessionTest, LoneDotLineIsStuffedAndDoesNotEndTheData) {
  EXPECT_EQ(Payload("before\n.\nafter\n"), "before\r\n..\r\nafter\r\n.\r\n");
  EXPECT_EQ(Payload("before\r\n.\r\n"), "before\r\n..\r\n.\r\n");
}

TEST(SmtpSessionTest, FinalLineWithoutNewlineIsTerminatedBeforeTheDot) {
  EXPECT_EQ(Payload("a\nlast"), "a\r\nlast\r\n.\r\n");
  EXPECT_EQ(Payload("."), "..\r\n.\r\n");
}

TEST(SmtpSessionTest, EmptyMessageIsJustTheTerminator) { EXPECT_EQ(Payload(""), ".\r\n"); }

TEST(SmtpSessionTest, TimeoutBeforeTheGreetingIsBannerTimeout) {
  SmtpSession s(Options(CheckKind::kConnect));
  (void)s.OnConnected();
  (void)s.OnBytes("220-mx.example.org\r\n");
  const std::vector<Action> actions = s.OnTimeout();
  EXPECT_EQ(Sent(actions), "");
  EXPECT_TRUE(Closes(actions));
  EXPECT_EQ(s.outcome().failure, FailureKind::kBannerTimeout);
  EXPECT_EQ(s.outcome().phase, Phase::kBanner);
}

TEST(SmtpSessionTest, TimeoutAfterTheMessageWasSentIsUncertain) {
  SmtpSession s(Options(CheckKind::kSend));
  SendUntil(s, "DATA");
  (void)s.OnBytes("354 go ahead\r\n");
  (void)s.OnTimeout();
  EXPECT_EQ(s.outcome().failure, FailureKind::kUncertain);
  EXPECT_EQ(s.outcome().phase, Phase::kEndOfData);
}

TEST(SmtpSessionTest, TimeoutBeforeTheDataGoAheadIsAnOrdinaryTimeout) {
  SmtpSession s(Options(CheckKind::kSend));
  SendUntil(s, "DATA");
  (void)s.OnTimeout();
  EXPECT_EQ(s.outcome().failure, FailureKind::kTimeout);
  EXPECT_EQ(s.outcome().phase, Phase::kData);
}

TEST(SmtpSessionTest, TimeoutNamesThePhaseItHappenedIn) {
  SmtpSession rcpt(Options(CheckKind::kSend));
  SendUntil(rcpt, "RCPT");
  (void)rcpt.OnTimeout();
  EXPECT_EQ(rcpt.outcome().failure, FailureKind::kTimeout);
  EXPECT_EQ(rcpt.outcome().phase, Phase::kRcpt);
  SmtpSession handshake(Options(CheckKind::kTls, TlsMode::kStartTls));
  Greet(handshake, kEhloStartTls);
  (void)handshake.OnBytes("220 go\r\n");
  (void)handshake.OnTimeout();
  EXPECT_EQ(handshake.outcome().phase, Phase::kTlsHandshake);
  SmtpSession connect(Options(CheckKind::kConnect));
  (void)connect.OnTimeout();
  EXPECT_EQ(connect.outcome().failure, FailureKind::kConnectTimeout);
  EXPECT_EQ(connect.outcome().phase, Phase::kConnect);
}

TEST(SmtpSessionTest, PeerCloseMidConversationIsServerClosedAtThatPhase) {
  SmtpSession s(Options(CheckKind::kSend));
  SendUntil(s, "RCPT");
  const std::vector<Action> actions = s.OnPeerClosed();
  EXPECT_EQ(Sent(actions), "");
  EXPECT_TRUE(Closes(actions));
  EXPECT_EQ(s.outcome().failure, FailureKind::kServerClosed);
  EXPECT_EQ(s.outcome().phase, Phase::kRcpt);
}

TEST(SmtpSessionTest, PeerCloseDuringQuitStillSucceeds) {
  SmtpSession s(Options(CheckKind::kConnect));
  Greet(s, kEhloPlain);
  EXPECT_TRUE(Closes(s.OnPeerClosed()));
  EXPECT_TRUE(s.outcome().success);
  EXPECT_EQ(s.outcome().phase, Phase::kQuit);
}

TEST(SmtpSessionTest, EndlessLineIsAViolationAsSoonAsItExceedsTheLimit) {
  SmtpSession s(Options(CheckKind::kConnect));
  (void)s.OnConnected();
  const std::string chunk(512, 'x');
  std::size_t fed = 0;
  while (!s.done() && fed < 100 * kMaxReplyLineLength) {
    (void)s.OnBytes(chunk);
    fed += chunk.size();
  }
  EXPECT_LE(fed, kMaxReplyLineLength + chunk.size() + 1);
  EXPECT_EQ(s.outcome().failure, FailureKind::kProtocolViolation);
  EXPECT_THAT(s.outcome().detail, HasSubstr("longer than 4096 octets"));
}

TEST(SmtpSessionTest, ReplyNobodyAskedForIsAProtocolViolation) {
  for (std::string_view extra : {"250 ok\r\n", "2"}) {
    SmtpSession s(Options(CheckKind::kConnect));
    (void)s.OnConnected();
    const std::vector<Action> actions = s.OnBytes(std::string(kBanner) + std::string(extra));
    EXPECT_EQ(Sent(actions), "") << extra;
    EXPECT_EQ(s.outcome().failure, FailureKind::kProtocolViolation);
    EXPECT_EQ(s.outcome().phase, Phase::kBanner);
    EXPECT_THAT(s.outcome().detail, HasSubstr("unsolicited"));
  }
}

TEST(SmtpSessionTest, EventsAfterTheCheckEndedAreIgnored) {
  SmtpSession s(Options(CheckKind::kConnect));
  Greet(s, kEhloPlain);
  ASSERT_TRUE(Closes(s.OnBytes(kBye)));
  EXPECT_TRUE(s.done());
  EXPECT_THAT(s.OnBytes("250 more\r\n"), IsEmpty());
  EXPECT_THAT(s.OnTimeout(), IsEmpty());
  EXPECT_THAT(s.OnPeerClosed(), IsEmpty());
  EXPECT_THAT(s.OnTlsFailed(FailureKind::kTlsHandshakeFailed, "x"), IsEmpty());
  EXPECT_THAT(s.OnConnected(), IsEmpty());
  EXPECT_TRUE(s.outcome().success);
}

TEST(SmtpSessionTest, PhaseAndFailureNamesAreSnakeCase) {
  std::vector<std::string> phases;
  for (int p = 0; p < kPhaseCount; ++p) phases.emplace_back(PhaseName(static_cast<Phase>(p)));
  EXPECT_THAT(phases, ElementsAre("dns", "connect", "banner", "ehlo", "starttls", "tls_handshake",
                                  "auth", "mail", "rcpt", "data", "end_of_data", "quit"));
  std::vector<std::string> failures;
  for (int f = 0; f <= static_cast<int>(FailureKind::kUncertain); ++f) {
    failures.emplace_back(FailureKindName(static_cast<FailureKind>(f)));
  }
  EXPECT_THAT(
      failures,
      ElementsAre("none", "dns_failure", "connection_refused", "connect_timeout", "banner_timeout",
                  "timeout", "reply_transient", "reply_permanent", "starttls_not_offered",
                  "tls_handshake_failed", "certificate_invalid", "auth_not_offered",
                  "auth_rejected", "server_closed", "protocol_violation", "uncertain"));
}

}  // namespace
}  // namespace mailpulse
