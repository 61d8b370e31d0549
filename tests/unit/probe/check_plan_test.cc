// Planning a check: targets, TargetSpec validation, the password file rules and the
// synthetic message (probe/check_plan.h).
#include "probe/check_plan.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace mailpulse {
namespace {

constexpr std::int64_t kNow = 1795500000;  // 2026-11-24

TEST(ParseCheckTargetTest, DefaultPortHostPortAndIpv6) {
  auto a = ParseCheckTarget("mx.example.com", 25);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "mx.example.com");
  EXPECT_EQ(a->port, 25);
  auto b = ParseCheckTarget("mx.example.com:587", 25);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->port, 587);
  auto c = ParseCheckTarget("[2001:db8::1]:465", 25);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "2001:db8::1");
  EXPECT_EQ(c->port, 465);
  EXPECT_FALSE(ParseCheckTarget("mx.example.com:notaport", 25).ok());
  EXPECT_FALSE(ParseCheckTarget("", 25).ok());
}

class PasswordFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailpulse-pw-XXXXXX";
    const int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void Write(const std::string& text, mode_t mode) {
    std::ofstream(path_) << text;
    ASSERT_EQ(chmod(path_.c_str(), mode), 0);
  }
  std::string path_;
};

TEST_F(PasswordFileTest, OwnerOnlyFileGivesThePasswordWithoutTheLineEnd) {
  Write("s3cret\r\n", 0600);
  auto pw = ReadPasswordFile(path_);
  ASSERT_TRUE(pw.ok()) << pw.status().message();
  EXPECT_EQ(*pw, "s3cret");
}

TEST_F(PasswordFileTest, FileReadableByGroupOrOthersIsRefusedWithoutShowingIt) {
  for (mode_t mode : {0640, 0604, 0644}) {
    Write("s3cret\n", mode);
    auto pw = ReadPasswordFile(path_);
    ASSERT_FALSE(pw.ok()) << std::oct << mode;
    EXPECT_NE(pw.status().message().find("readable by others"), std::string::npos);
    EXPECT_EQ(pw.status().message().find("s3cret"), std::string::npos);
  }
}

TEST_F(PasswordFileTest, MissingFileIsAnError) {
  EXPECT_FALSE(ReadPasswordFile(path_ + ".missing").ok());
}

TEST(ProbeMessageTest, HasTheHeadersAProbeMessageNeeds) {
  ProbeMessageFields f;
  f.from = "probe@example.com";
  f.to = {"sink@example.net"};
  f.domain = "probe.example.com";
  f.id = "0123456789abcdef0123456789abcdef";
  f.date = static_cast<std::time_t>(kNow);
  const std::string m = BuildProbeMessage(f);
  for (const char* header :
       {"Date: ", "From: ", "To: ", "Subject: mailpulse probe",
        "Message-ID: <0123456789abcdef0123456789abcdef.mailpulse@probe.example.com>"}) {
    EXPECT_NE(m.find(header), std::string::npos) << header << "\n" << m;
  }
  EXPECT_EQ(NewProbeId().size(), 32u);
  EXPECT_NE(NewProbeId(), NewProbeId());
}

TargetSpec PlainSpec() {
  TargetSpec spec;
  spec.host = "mx.example.org";
  spec.helo = "probe.example.org";
  return spec;
}

TEST(PlanCheckTest, DefaultPortFollowsTheTlsMode) {
  TargetSpec spec = PlainSpec();
  auto plain = PlanCheck(spec);
  ASSERT_TRUE(plain.ok()) << plain.status().message();
  EXPECT_EQ(plain->target.ToString(), "mx.example.org:25");
  EXPECT_EQ(plain->options.session.kind, CheckKind::kConnect);
  spec.tls = "implicit";
  auto implicit = PlanCheck(spec);
  ASSERT_TRUE(implicit.ok());
  EXPECT_EQ(implicit->options.port, 465);
  EXPECT_EQ(implicit->options.session.kind, CheckKind::kTls);
  spec.port = 2465;
  EXPECT_EQ(PlanCheck(spec)->options.port, 2465);
}

TEST(PlanCheckTest, PhaseTimeoutDefaultsToAndIsCappedByTheTimeout) {
  TargetSpec spec = PlainSpec();
  spec.timeout_seconds = 5;
  EXPECT_DOUBLE_EQ(PlanCheck(spec)->options.phase_timeout_seconds, 5);
  spec.phase_timeout_seconds = 2;
  EXPECT_DOUBLE_EQ(PlanCheck(spec)->options.phase_timeout_seconds, 2);
  spec.phase_timeout_seconds = 9;
  EXPECT_DOUBLE_EQ(PlanCheck(spec)->options.phase_timeout_seconds, 5);
}

TEST(PlanCheckTest, ErrorsNameTheFieldTheyAreAbout) {
  const auto field_of = [](const TargetSpec& spec) {
    std::string field;
    auto plan = PlanCheck(spec, &field);
    EXPECT_FALSE(plan.ok());
    return field;
  };
  TargetSpec spec = PlainSpec();
  spec.tls = "sometimes";
  EXPECT_EQ(field_of(spec), "tls");
  spec = PlainSpec();
  spec.host = "";
  EXPECT_EQ(field_of(spec), "host");
  spec = PlainSpec();
  spec.send = true;
  spec.from = "a b@example.org";
  spec.to = {"x@example.org"};
  EXPECT_EQ(field_of(spec), "from");
  spec.from = "";
  spec.to = {};
  EXPECT_EQ(field_of(spec), "to");
  spec = PlainSpec();
  spec.auth_user = "u";
  EXPECT_EQ(field_of(spec), "auth_password_file");
  spec = PlainSpec();
  spec.timeout_seconds = 0;
  EXPECT_EQ(field_of(spec), "timeout");
}

TEST(PlanCheckTest, MxTargetIsAMailDomainAndReachesTheRunnerOptions) {
  TargetSpec spec = PlainSpec();
  spec.host = "example.org";
  spec.mx = true;
  auto plan = PlanCheck(spec);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_TRUE(plan->options.mx_lookup);
  EXPECT_EQ(plan->options.host, "example.org");
  EXPECT_EQ(plan->target.ToString(), "example.org:25");
  EXPECT_FALSE(PlanCheck(PlainSpec())->options.mx_lookup);
}

TEST(PlanCheckTest, MxTargetThatIsAnAddressIsRefusedNamingTheMxField) {
  for (const char* address : {"192.0.2.1", "2001:db8::1"}) {
    TargetSpec spec = PlainSpec();
    spec.host = address;
    spec.mx = true;
    std::string field;
    auto plan = PlanCheck(spec, &field);
    ASSERT_FALSE(plan.ok()) << address;
    EXPECT_EQ(field, "mx");
    EXPECT_EQ(plan.status().message(),
              std::string("needs a mail domain, not the address ") + address);
  }
}

TEST(PlanCheckTest, EachRunOfASendCheckGetsItsOwnMessage) {
  TargetSpec spec = PlainSpec();
  spec.send = true;
  spec.from = "probe@example.org";
  spec.to = {"sink@example.net"};
  auto plan = PlanCheck(spec);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(plan->options.session.kind, CheckKind::kSend);
  std::string id1, id2;
  const CheckOptions run1 = OptionsForRun(*plan, kNow * 1000000, &id1);
  const CheckOptions run2 = OptionsForRun(*plan, kNow * 1000000, &id2);
  EXPECT_EQ(id1.size(), 32u);
  EXPECT_NE(id1, id2);
  EXPECT_NE(run1.session.message.find(id1 + ".mailpulse@probe.example.org"), std::string::npos);
  EXPECT_NE(run2.session.message.find(id2), std::string::npos);
  EXPECT_EQ(run1.session.rcpt_to, std::vector<std::string>{"sink@example.net"});
}

}  // namespace
}  // namespace mailpulse
