// ImapSession: scripted server transcripts (Dovecot's words where it matters) replayed whole,
// at every byte split of every turn and one byte at a time, and each failure with the exact
// phase, server text and client bytes it must produce.
#include "probe/imap/imap_session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "probe/imap/imap_text.h"

namespace mailpulse {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kId[] = "0123456789abcdef0123456789abcdef";
constexpr char kPassword[] = "s3cret-\"pw\"";
constexpr char kGreetingCaps[] =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] "
    "Dovecot (Debian) ready.\r\n";
constexpr char kSearch[] =
    "UID SEARCH HEADER X-Mailpulse-Probe \"id=0123456789abcdef0123456789abcdef\"\r\n";
constexpr char kFetchItems[] =
    " (UID BODY.PEEK[HEADER.FIELDS (X-Mailpulse-Probe X-Mailpulse-Hop Date Message-ID)])\r\n";
constexpr char kSelectOk[] =
    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* 3 EXISTS\r\n* 0 RECENT\r\n"
    "* OK [UIDVALIDITY 1718000000] UIDs valid\r\n* OK [UIDNEXT 9] Predicted next UID\r\n";

std::string ProbeHeaders(std::string_view id, std::string_view suffix = "") {
  return "Date: Mon, 10 Jun 2024 12:00:00 +0000\r\n"
         "Message-ID: <" +
         std::string(id) +
         ".mailpulse@probe.test>\r\n"
         "X-Mailpulse-Probe: v=1; id=" +
         std::string(id) + std::string(suffix) +
         "; t=1718020800000000;\r\n src=probe; mac=bWFj\r\n"
         "X-Mailpulse-Hop: hop=mx1; t=1718020800100000; qid=4W1\r\n"
         "X-Mailpulse-Hop: hop=mx2;\r\n\tt=1718020800200000; qid=4W2\r\n\r\n";
}

// "* seq FETCH (UID uid BODY[HEADER.FIELDS (...)] {n}\r\n<headers>)\r\n", as Dovecot sends it.
std::string FetchResponse(int seq, int uid, const std::string& headers) {
  return "* " + std::to_string(seq) + " FETCH (UID " + std::to_string(uid) +
         " BODY[HEADER.FIELDS (X-MAILPULSE-PROBE X-MAILPULSE-HOP DATE MESSAGE-ID)] {" +
         std::to_string(headers.size()) + "}\r\n" + headers + ")\r\n";
}

std::string PlainCredentials(std::string_view user, std::string_view password) {
  std::string c;
  c += '\0';
  c += user;
  c += '\0';
  c += password;
  return ImapBase64Encode(c);
}

ImapSessionOptions Options(ImapTlsMode tls = ImapTlsMode::kImplicit) {
  ImapSessionOptions o;
  o.tls = tls;
  o.user = "probe@mailbox.test";
  o.password = kPassword;
  o.probe_id = kId;
  return o;
}

struct Turn {
  std::string server;
  std::string client;
  bool tls = false;  // the client must start TLS after this turn; the driver completes it
};

struct Replay {
  std::vector<std::string> sent;  // client bytes per turn; [0] answers OnConnected
  std::vector<bool> tls;
  std::vector<std::string> phases;
  int closes = 0;
  bool reacted_early = false;  // the client acted before a turn's last byte arrived
  ImapOutcome outcome;

  std::string Summary() const {
    std::string s = "sent:";
    for (const std::string& b : sent) s += " [" + b + "]";
    s += "\ntls:";
    for (bool t : tls) s += t ? " 1" : " 0";
    s += "\nphases:";
    for (const std::string& p : phases) s += " " + p;
    s += "\ncloses: " + std::to_string(closes) + (reacted_early ? " early" : "");
    s += "\noutcome: " + std::to_string(outcome.success) + " " +
         std::string(ImapFailureName(outcome.failure)) + " at " +
         std::string(ImapPhaseName(outcome.phase)) + " [" + outcome.server_text + "] [" +
         outcome.detail + "] candidates " + std::to_string(outcome.candidates) + " deleted " +
         std::to_string(outcome.deleted);
    for (const ProbeMessage& m : outcome.messages) {
      s += "\nmessage " + std::to_string(m.uid) + ": " + m.probe_header + " | " + m.date + " | " +
           m.message_id;
      for (const std::string& h : m.hop_stamps) s += " | " + h;
    }
    return s;
  }
};

void Record(const std::vector<ImapAction>& actions, Replay* r) {
  for (const ImapAction& a : actions) {
    switch (a.kind) {
      case ImapAction::Kind::kSend:
        r->sent.back() += a.bytes;
        break;
      case ImapAction::Kind::kStartTls:
        r->tls.back() = true;
        break;
      case ImapAction::Kind::kClose:
        ++r->closes;
        break;
      case ImapAction::Kind::kPhaseStarted:
        r->phases.emplace_back(ImapPhaseName(a.phase));
        break;
    }
  }
}

// Replays `turns`, cutting turn `cut_turn` at `cut` (0: no cut; npos: one byte at a time).
Replay Play(const ImapSessionOptions& options, const std::vector<Turn>& turns,
            std::size_t cut_turn = 0, std::size_t cut = 0) {
  ImapSession session(options);
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
      const std::vector<ImapAction> actions = session.OnBytes(pieces[i]);
      if (i + 1 < pieces.size() && !actions.empty()) r.reacted_early = true;
      Record(actions, &r);
    }
    if (r.tls.back()) Record(session.OnTlsEstablished(), &r);
  }
  r.outcome = session.outcome();
  return r;
}

// Replays the script whole, one byte at a time and cut at every position of every turn:
// every replay must send exactly the scripted client bytes and end the same way.
Replay ReplayAtEverySplit(const ImapSessionOptions& options, const std::vector<Turn>& turns) {
  const Replay whole = Play(options, turns);
  EXPECT_EQ(whole.sent[0], "");
  for (std::size_t t = 0; t < turns.size(); ++t) {
    EXPECT_EQ(whole.sent[t + 1], turns[t].client) << "after server turn " << t;
    EXPECT_EQ(whole.tls[t + 1], turns[t].tls) << "after server turn " << t;
  }
  EXPECT_FALSE(whole.reacted_early);
  EXPECT_EQ(Play(options, turns, 0, std::string::npos).Summary(), whole.Summary()) << "bytewise";
  for (std::size_t t = 0; t < turns.size(); ++t) {
    for (std::size_t cut = 1; cut < turns[t].server.size(); ++cut) {
      const Replay split = Play(options, turns, t, cut);
      if (split.Summary() != whole.Summary()) {
        ADD_FAILURE() << "turn " << t << " cut at " << cut << ":\n"
                      << split.Summary() << "\nwhole:\n"
                      << whole.Summary();
        return whole;
      }
    }
  }
  return whole;
}

// Greeting with capabilities, AUTHENTICATE PLAIN with SASL-IR, the capabilities after login
// from the OK's code, one match, UID EXPUNGE: Dovecot 2.3 on port 993.
TEST(ImapSessionTest, FoundMessageIsReadAndDeletedAtEverySplit) {
  const std::string headers = ProbeHeaders(kId);
  const Replay r = ReplayAtEverySplit(
      Options(),
      {{kGreetingCaps,
        "mp1 AUTHENTICATE PLAIN " + PlainCredentials("probe@mailbox.test", kPassword) + "\r\n"},
       {"mp1 OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ UIDPLUS MOVE] Logged in\r\n",
        "mp2 SELECT \"INBOX\"\r\n"},
       {std::string(kSelectOk) + "mp2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n",
        std::string("mp3 ") + kSearch},
       {"* SEARCH 7\r\nmp3 OK Search completed (0.001 + 0.000 secs).\r\n",
        std::string("mp4 UID FETCH 7") + kFetchItems},
       {FetchResponse(3, 7, headers) + "mp4 OK Fetch completed.\r\n",
        "mp5 UID STORE 7 +FLAGS.SILENT (\\Deleted)\r\n"},
       {"mp5 OK Store completed.\r\n", "mp6 UID EXPUNGE 7\r\n"},
       {"* 3 EXPUNGE\r\nmp6 OK Expunge completed.\r\n", "mp7 LOGOUT\r\n"},
       {"* BYE Logging out\r\nmp7 OK Logout completed (0.001 + 0.000 secs).\r\n", ""}});
  EXPECT_THAT(r.phases, ElementsAre("greeting", "login", "select", "search", "fetch", "store",
                                    "expunge", "logout"));
  EXPECT_EQ(r.closes, 1);
  const ImapOutcome& o = r.outcome;
  EXPECT_TRUE(o.found()) << r.Summary();
  EXPECT_EQ(o.phase, ImapPhase::kLogout);
  EXPECT_EQ(o.candidates, 1u);
  EXPECT_EQ(o.deleted, 1u);
  ASSERT_EQ(o.messages.size(), 1u);
  const ProbeMessage& m = o.messages[0];
  EXPECT_EQ(m.uid, 7u);
  EXPECT_EQ(m.probe_header, std::string("v=1; id=") + kId +
                                "; t=1718020800000000; src=probe; "
                                "mac=bWFj");
  EXPECT_THAT(m.hop_stamps, ElementsAre("hop=mx1; t=1718020800100000; qid=4W1",
                                        "hop=mx2;\tt=1718020800200000; qid=4W2"));
  EXPECT_EQ(m.date, "Mon, 10 Jun 2024 12:00:00 +0000");
  EXPECT_EQ(m.message_id, std::string("<") + kId + ".mailpulse@probe.test>");
  EXPECT_TRUE(o.capabilities.uidplus);
}

// No capabilities in the greeting, STARTTLS, LOGIN (no AUTH=PLAIN) with a quoted password,
// capabilities asked again after TLS and after login, a substring decoy among the hits,
// EXPUNGE without UIDPLUS.
TEST(ImapSessionTest, StartTlsLoginAndDecoyAtEverySplit) {
  const Replay r = ReplayAtEverySplit(
      Options(ImapTlsMode::kStartTls),
      {{"* OK IMAP4rev1 server ready\r\n", "mp1 CAPABILITY\r\n"},
       {"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\nmp1 OK Capability completed.\r\n",
        "mp2 STARTTLS\r\n"},
       {"mp2 OK Begin TLS negotiation now.\r\n", "mp3 CAPABILITY\r\n", true},
       {"* CAPABILITY IMAP4rev1 ID\r\nmp3 OK Capability completed.\r\n",
        "mp4 LOGIN \"probe@mailbox.test\" \"s3cret-\\\"pw\\\"\"\r\n"},
       {"mp4 OK Logged in\r\n", "mp5 CAPABILITY\r\n"},
       {"* CAPABILITY IMAP4rev1 ID\r\nmp5 OK Capability completed.\r\n",
        "mp6 SELECT \"INBOX\"\r\n"},
       {std::string(kSelectOk) + "mp6 OK [READ-WRITE] Select completed.\r\n",
        std::string("mp7 ") + kSearch},
       {"* SEARCH 5 3\r\nmp7 OK Search completed.\r\n",
        std::string("mp8 UID FETCH 3,5") + kFetchItems},
       {FetchResponse(1, 3, ProbeHeaders(kId, "ff")) + "* 1 FETCH (FLAGS (\\Seen))\r\n" +
            FetchResponse(2, 5, ProbeHeaders(kId)) + "mp8 OK Fetch completed.\r\n",
        "mp9 UID STORE 5 +FLAGS.SILENT (\\Deleted)\r\n"},
       {"mp9 OK Store completed.\r\n", "mp10 EXPUNGE\r\n"},
       {"* 2 EXPUNGE\r\nmp10 OK Expunge completed.\r\n", "mp11 LOGOUT\r\n"},
       {"* BYE Logging out\r\nmp11 OK Logout completed.\r\n", ""}});
  EXPECT_THAT(r.phases, ElementsAre("greeting", "capability", "starttls", "tls_handshake",
                                    "capability", "login", "capability", "select", "search",
                                    "fetch", "store", "expunge", "logout"));
  EXPECT_TRUE(r.outcome.found()) << r.Summary();
  EXPECT_EQ(r.outcome.candidates, 2u);
  ASSERT_EQ(r.outcome.messages.size(), 1u);
  EXPECT_EQ(r.outcome.messages[0].uid, 5u);
  EXPECT_EQ(r.outcome.deleted, 1u);
}

TEST(ImapSessionTest, NothingFoundLogsOutWithoutFetching) {
  const Replay r = ReplayAtEverySplit(
      Options(),
      {{kGreetingCaps,
        "mp1 AUTHENTICATE PLAIN " + PlainCredentials("probe@mailbox.test", kPassword) + "\r\n"},
       {"mp1 OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n", "mp2 SELECT \"INBOX\"\r\n"},
       {"mp2 OK [READ-WRITE] Select completed.\r\n", std::string("mp3 ") + kSearch},
       {"* SEARCH\r\nmp3 OK Search completed.\r\n", "mp4 LOGOUT\r\n"},
       {"* BYE Logging out\r\nmp4 OK Logout completed.\r\n", ""}});
  EXPECT_TRUE(r.outcome.success);
  EXPECT_FALSE(r.outcome.found());
  EXPECT_EQ(r.outcome.candidates, 0u);
}

// Substring matches only: the search hits, the exact check finds none, nothing is stored.
TEST(ImapSessionTest, OnlyDecoysFoundIsNotFoundAndNothingIsDeleted) {
  ImapSessionOptions o = Options();
  const Replay r = ReplayAtEverySplit(
      o,
      {{kGreetingCaps,
        "mp1 AUTHENTICATE PLAIN " + PlainCredentials("probe@mailbox.test", kPassword) + "\r\n"},
       {"mp1 OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n", "mp2 SELECT \"INBOX\"\r\n"},
       {"mp2 OK [READ-WRITE] Select completed.\r\n", std::string("mp3 ") + kSearch},
       {"* SEARCH 2\r\nmp3 OK Search completed.\r\n", std::string("mp4 UID FETCH 2") + kFetchItems},
       {FetchResponse(1, 2, ProbeHeaders(kId, "0")) + "mp4 OK Fetch completed.\r\n",
        "mp5 LOGOUT\r\n"},
       {"mp5 OK Logout completed.\r\n", ""}});
  EXPECT_TRUE(r.outcome.success);
  EXPECT_FALSE(r.outcome.found());
  EXPECT_EQ(r.outcome.candidates, 1u);
  EXPECT_EQ(r.outcome.deleted, 0u);
}

TEST(ImapSessionTest, KeepReportsWithoutDeleting) {
  ImapSessionOptions o = Options();
  o.keep = true;
  const Replay r = ReplayAtEverySplit(
      o,
      {{kGreetingCaps,
        "mp1 AUTHENTICATE PLAIN " + PlainCredentials("probe@mailbox.test", kPassword) + "\r\n"},
       {"mp1 OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n", "mp2 SELECT \"INBOX\"\r\n"},
       {"mp2 OK [READ-WRITE] Select completed.\r\n", std::string("mp3 ") + kSearch},
       {"* SEARCH 4\r\nmp3 OK Search completed.\r\n", std::string("mp4 UID FETCH 4") + kFetchItems},
       {FetchResponse(1, 4, ProbeHeaders(kId)) + "mp4 OK Fetch completed.\r\n", "mp5 LOGOUT\r\n"},
       {"* BYE Logging out\r\nmp5 OK Logout completed.\r\n", ""}});
  EXPECT_TRUE(r.outcome.found());
  EXPECT_EQ(r.outcome.deleted, 0u);
}

// Without SASL-IR the credentials follow the server's "+"; without LITERAL+ a password that
// cannot be quoted goes as a synchronizing literal after the "+".
TEST(ImapSessionTest, AuthenticateWithoutInitialResponseWaitsForContinuation) {
  const Replay r = ReplayAtEverySplit(
      Options(),
      {{"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n", "mp1 AUTHENTICATE PLAIN\r\n"},
       {"+ \r\n", PlainCredentials("probe@mailbox.test", kPassword) + "\r\n"},
       {"mp1 OK [CAPABILITY IMAP4rev1] Logged in\r\n", "mp2 SELECT \"INBOX\"\r\n"}});
  EXPECT_FALSE(r.outcome.success);  // the script ends here
}

TEST(ImapSessionTest, UnquotablePasswordGoesAsLiteral) {
  ImapSessionOptions o = Options();
  o.password = "p\xc3\xa4ss";  // UTF-8: not a quoted string (RFC 3501 section 9)
  ReplayAtEverySplit(
      o, {{"* OK [CAPABILITY IMAP4rev1] ready\r\n", "mp1 LOGIN \"probe@mailbox.test\" {5}\r\n"},
          {"+ Ready for literal data\r\n", "p\xc3\xa4ss\r\n"},
          {"mp1 OK [CAPABILITY IMAP4rev1] Logged in\r\n", "mp2 SELECT \"INBOX\"\r\n"}});
  ReplayAtEverySplit(o, {{"* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n",
                          "mp1 LOGIN \"probe@mailbox.test\" {5+}\r\np\xc3\xa4ss\r\n"}});
}

struct FailureCase {
  std::vector<Turn> turns;
  ImapFailure failure;
  ImapPhase phase;
  std::string server_text;  // exact
  std::string detail;       // substring
};

void ExpectFailure(const ImapSessionOptions& options, const FailureCase& c) {
  const Replay r = ReplayAtEverySplit(options, c.turns);
  EXPECT_EQ(r.closes, 1) << r.Summary();
  EXPECT_FALSE(r.outcome.success);
  EXPECT_EQ(ImapFailureName(r.outcome.failure), ImapFailureName(c.failure)) << r.Summary();
  EXPECT_EQ(ImapPhaseName(r.outcome.phase), ImapPhaseName(c.phase)) << r.Summary();
  EXPECT_EQ(r.outcome.server_text, c.server_text);
  EXPECT_THAT(r.outcome.detail, HasSubstr(c.detail));
  EXPECT_THAT(r.Summary(), Not(HasSubstr("s3cret"))) << "the password leaked into the outcome";
}

const std::string kPlainLogin =
    "mp1 AUTHENTICATE PLAIN " + PlainCredentials("probe@mailbox.test", kPassword) + "\r\n";

TEST(ImapSessionTest, RejectedLoginIsAuthRejectedWithTheServersText) {
  ExpectFailure(Options(),
                {{{kGreetingCaps, kPlainLogin},
                  {"mp1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", "mp2 LOGOUT\r\n"}},
                 ImapFailure::kAuthRejected,
                 ImapPhase::kLogin,
                 "NO [AUTHENTICATIONFAILED] Authentication failed.",
                 ""});
}

TEST(ImapSessionTest, MissingMailboxIsMailboxUnavailable) {
  ImapSessionOptions o = Options();
  o.mailbox = "Probes/Inbound";
  ExpectFailure(
      o, {{{kGreetingCaps, kPlainLogin},
           {"mp1 OK [CAPABILITY IMAP4rev1] Logged in\r\n", "mp2 SELECT \"Probes/Inbound\"\r\n"},
           {"mp2 NO [NONEXISTENT] Mailbox doesn't exist: Probes/Inbound\r\n", "mp3 LOGOUT\r\n"}},
          ImapFailure::kMailboxUnavailable,
          ImapPhase::kSelect,
          "NO [NONEXISTENT] Mailbox doesn't exist: Probes/Inbound",
          ""});
}

TEST(ImapSessionTest, ByeGreetingAndByeMidSessionAreServerBye) {
  ExpectFailure(Options(), {{{"* BYE Too many connections from 127.0.0.1\r\n", ""}},
                            ImapFailure::kServerBye,
                            ImapPhase::kGreeting,
                            "BYE Too many connections from 127.0.0.1",
                            ""});
  ExpectFailure(Options(),
                {{{kGreetingCaps, kPlainLogin},
                  {"mp1 OK [CAPABILITY IMAP4rev1] Logged in\r\n", "mp2 SELECT \"INBOX\"\r\n"},
                  {"mp2 OK Select completed.\r\n", std::string("mp3 ") + kSearch},
                  {"* BYE Server shutting down.\r\n", ""}},
                 ImapFailure::kServerBye,
                 ImapPhase::kSearch,
                 "BYE Server shutting down.",
                 ""});
}

TEST(ImapSessionTest, GarbageGreetingIsProtocolViolation) {
  ExpectFailure(Options(), {{{std::string("\x16\x03\x01\x00\x2a junk\r\n", 12), ""}},
                            ImapFailure::kProtocolViolation,
                            ImapPhase::kGreeting,
                            "",
                            "malformed response line \"\\x16\\x03\\x01\\x00*"});
  ExpectFailure(Options(), {{{"220 mx.example.org ESMTP Postfix\r\n", ""}},
                            ImapFailure::kProtocolViolation,
                            ImapPhase::kGreeting,
                            "",
                            "not OK, NO or BAD"});
}

TEST(ImapSessionTest, OverLongLiteralInFetchIsProtocolViolation) {
  ExpectFailure(Options(),
                {{{kGreetingCaps, kPlainLogin},
                  {"mp1 OK [CAPABILITY IMAP4rev1] Logged in\r\n", "mp2 SELECT \"INBOX\"\r\n"},
                  {"mp2 OK Select completed.\r\n", std::string("mp3 ") + kSearch},
                  {"* SEARCH 1\r\nmp3 OK done\r\n", std::string("mp4 UID FETCH 1") + kFetchItems},
                  {"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (X)] {1000000}\r\n", ""}},
                 ImapFailure::kProtocolViolation,
                 ImapPhase::kFetch,
                 "",
                 "literal of 1000000 octets announced"});
}

// RFC 3501 section 11.1 and the STARTTLS injection attacks (CVE-2011-0411 for SMTP): bytes
// that arrive after the OK and before the handshake are refused, whether they come with the
// OK (the session does not start TLS) or after it (the session already asked for TLS).
TEST(ImapSessionTest, DataAfterStartTlsOkIsInjection) {
  const std::vector<Turn> with_ok = {
      {"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n", "mp1 STARTTLS\r\n"},
      {"mp1 OK Begin TLS negotiation now.\r\n* OK [CAPABILITY IMAP4rev1] x\r\n", ""}};
  const Replay together = Play(Options(ImapTlsMode::kStartTls), with_ok);
  EXPECT_EQ(together.outcome.failure, ImapFailure::kProtocolViolation);
  EXPECT_EQ(together.outcome.phase, ImapPhase::kStartTls);
  EXPECT_FALSE(together.tls.back()) << together.Summary();
  EXPECT_THAT(together.outcome.detail, HasSubstr("possible command injection"));

  ImapSession after(Options(ImapTlsMode::kStartTls));
  after.OnConnected();
  after.OnBytes(with_ok[0].server);
  after.OnBytes("mp1 OK Begin TLS negotiation now.\r\n");
  EXPECT_THAT(after.OnBytes("* OK [CAPABILITY IMAP4rev1] x\r\n"),
              ElementsAre(testing::Field(&ImapAction::kind, ImapAction::Kind::kClose)));
  EXPECT_EQ(after.outcome().failure, ImapFailure::kProtocolViolation);
  EXPECT_EQ(after.outcome().phase, ImapPhase::kTlsHandshake);
  EXPECT_THAT(after.outcome().detail, HasSubstr("possible command injection"));
}

TEST(ImapSessionTest, StartTlsNotOfferedAndPlaintextPreauthRefused) {
  ExpectFailure(Options(ImapTlsMode::kStartTls),
                {{{"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n", "mp1 LOGOUT\r\n"}},
                 ImapFailure::kStartTlsNotOffered,
                 ImapPhase::kGreeting,
                 "",
                 "does not offer STARTTLS"});
  ExpectFailure(Options(ImapTlsMode::kStartTls),
                {{{"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome\r\n", "mp1 LOGOUT\r\n"}},
                 ImapFailure::kStartTlsNotOffered,
                 ImapPhase::kGreeting,
                 "PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome",
                 "pre-authenticated"});
}

TEST(ImapSessionTest, LoginDisabledWithoutPlainIsAuthNotOffered) {
  ExpectFailure(
      Options(),
      {{{"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=GSSAPI] hi\r\n", "mp1 LOGOUT\r\n"}},
       ImapFailure::kAuthNotOffered,
       ImapPhase::kGreeting,
       "",
       "LOGINDISABLED and no AUTH=PLAIN"});
}

TEST(ImapSessionTest, ResponseWithAnotherTagIsProtocolViolation) {
  ExpectFailure(Options(), {{{kGreetingCaps, kPlainLogin}, {"zz9 OK Logged in\r\n", ""}},
                            ImapFailure::kProtocolViolation,
                            ImapPhase::kLogin,
                            "",
                            "tagged \"zz9\" while mp1 (AUTHENTICATE) was in flight"});
}

TEST(ImapSessionTest, RejectedStoreKeepsTheFindingsAndFails) {
  const Replay r =
      Play(Options(), {{kGreetingCaps, ""},
                       {"mp1 OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n", ""},
                       {"mp2 OK [READ-ONLY] Select completed.\r\n", ""},
                       {"* SEARCH 7\r\nmp3 OK done\r\n", ""},
                       {FetchResponse(1, 7, ProbeHeaders(kId)) + "mp4 OK done\r\n", ""},
                       {"mp5 NO Mailbox is read-only.\r\n", ""}});
  EXPECT_EQ(r.outcome.failure, ImapFailure::kCommandRejected);
  EXPECT_EQ(r.outcome.phase, ImapPhase::kStore);
  EXPECT_EQ(r.outcome.server_text, "NO Mailbox is read-only.");
  EXPECT_EQ(r.outcome.messages.size(), 1u);
  EXPECT_EQ(r.outcome.deleted, 0u);
  EXPECT_EQ(r.sent.back(), "mp6 LOGOUT\r\n");
}

TEST(ImapSessionTest, TimeoutsAndClosesNameWhatWasAwaited) {
  ImapSession greeting(Options());
  greeting.OnConnected();
  std::vector<ImapAction> a = greeting.OnTimeout();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, ImapAction::Kind::kClose);
  EXPECT_EQ(greeting.outcome().failure, ImapFailure::kTimeout);
  EXPECT_EQ(greeting.outcome().detail, "no response to the greeting in time");

  ImapSession closed(Options());
  closed.OnConnected();
  closed.OnBytes(kGreetingCaps);
  closed.OnPeerClosed();
  EXPECT_EQ(closed.outcome().failure, ImapFailure::kServerClosed);
  EXPECT_EQ(closed.outcome().phase, ImapPhase::kLogin);
  EXPECT_THAT(closed.outcome().detail, HasSubstr("waited for AUTHENTICATE"));

  ImapSession connecting(Options());
  connecting.OnTimeout();
  EXPECT_EQ(connecting.outcome().failure, ImapFailure::kConnectTimeout);
}

TEST(ImapSessionTest, CloseOrTimeoutAtLogoutIsSuccess) {
  for (const bool close : {true, false}) {
    ImapSession s(Options());
    s.OnConnected();
    s.OnBytes(kGreetingCaps);
    s.OnBytes("mp1 OK [CAPABILITY IMAP4rev1] Logged in\r\n");
    s.OnBytes("mp2 OK Select completed.\r\n");
    s.OnBytes("* SEARCH\r\nmp3 OK done\r\n");
    close ? s.OnPeerClosed() : s.OnTimeout();
    EXPECT_TRUE(s.outcome().success);
    EXPECT_TRUE(s.done());
  }
}

TEST(ImapSessionTest, TlsFailureEndsInTheHandshakePhase) {
  ImapSession s(Options(ImapTlsMode::kStartTls));
  s.OnConnected();
  s.OnBytes("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n");
  s.OnBytes("mp1 OK Begin TLS negotiation now.\r\n");
  EXPECT_THAT(s.OnBytes("* OK plaintext"),
              ElementsAre(testing::Field(&ImapAction::kind, ImapAction::Kind::kClose)));
  EXPECT_EQ(s.outcome().failure, ImapFailure::kProtocolViolation);

  ImapSession t(Options(ImapTlsMode::kStartTls));
  t.OnConnected();
  t.OnBytes("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n");
  t.OnBytes("mp1 OK Begin TLS negotiation now.\r\n");
  t.OnTlsFailed(ImapFailure::kCertificateInvalid, "hostname mismatch");
  EXPECT_EQ(t.outcome().failure, ImapFailure::kCertificateInvalid);
  EXPECT_EQ(t.outcome().phase, ImapPhase::kTlsHandshake);
  EXPECT_EQ(t.outcome().detail, "hostname mismatch");
}

TEST(ImapSessionTest, InvalidOptionsSendNothing) {
  ImapSessionOptions o = Options();
  o.probe_id = "not-an-id";
  EXPECT_FALSE(ImapSession::CheckOptions(o).ok());
  ImapSession s(o);
  const std::vector<ImapAction> a = s.OnConnected();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, ImapAction::Kind::kClose);
  EXPECT_EQ(s.outcome().failure, ImapFailure::kInvalidOptions);
  EXPECT_THAT(s.outcome().detail, HasSubstr("is not a probe id"));
  o = Options();
  o.user.clear();
  EXPECT_THAT(ImapSession::CheckOptions(o).message(), HasSubstr("no user"));
  EXPECT_TRUE(ImapSession::CheckOptions(Options()).ok());
}

TEST(ImapSessionTest, ProbeIdIsMatchedIgnoringCase) {
  ImapSessionOptions o = Options();
  o.probe_id = "0123456789ABCDEF0123456789ABCDEF";
  o.keep = true;
  const Replay r = Play(o, {{kGreetingCaps, ""},
                            {"mp1 OK [CAPABILITY IMAP4rev1] Logged in\r\n", ""},
                            {"mp2 OK Select completed.\r\n", ""},
                            {"* SEARCH 1\r\nmp3 OK done\r\n", ""},
                            {FetchResponse(1, 1, ProbeHeaders(kId)) + "mp4 OK done\r\n", ""}});
  EXPECT_THAT(r.sent[3], HasSubstr(kId));  // searched for in lower case
  EXPECT_EQ(r.outcome.messages.size(), 1u);
}

}  // namespace
}  // namespace mailpulse
