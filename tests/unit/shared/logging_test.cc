#include "shared/logging.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>

namespace mailpulse {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Redirects fd 2 into a pipe for the lifetime of the object. Lines are at most 4 KiB, well
// under the pipe's capacity, so the writer never blocks on an unread pipe.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    if (pipe(fds_) != 0) ADD_FAILURE() << "pipe failed";
    saved_stderr_ = dup(STDERR_FILENO);
    dup2(fds_[1], STDERR_FILENO);
    close(fds_[1]);
  }
  ~StderrCapture() { Finish(); }

  // Restores stderr and returns everything written to it meanwhile.
  std::string Finish() {
    if (saved_stderr_ < 0) return captured_;
    dup2(saved_stderr_, STDERR_FILENO);
    close(saved_stderr_);
    saved_stderr_ = -1;
    char buffer[8192];
    for (ssize_t n; (n = read(fds_[0], buffer, sizeof buffer)) > 0;) {
      captured_.append(buffer, static_cast<std::size_t>(n));
    }
    close(fds_[0]);
    return captured_;
  }

 private:
  int fds_[2] = {-1, -1};
  int saved_stderr_ = -1;
  std::string captured_;
};

std::size_t LineCount(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { LogInit("mptest", LogTarget::kStderr, LogLevel::kDebug); }
  void TearDown() override { LogInit("mailpulse", LogTarget::kStderr, LogLevel::kInfo); }

  std::string prefix_ = "mptest[" + std::to_string(getpid()) + "]: ";
};

TEST(LogLevelTest, ParsesEveryLevelWord) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("info"), LogLevel::kInfo);
  EXPECT_EQ(*ParseLogLevel("warning"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("error"), LogLevel::kError);
}

TEST(LogLevelTest, RejectsAnUnknownWordListingTheChoices) {
  EXPECT_EQ(ParseLogLevel("x").status().message(),
            "unknown log level 'x' (expected debug, info, warning or error)");
  EXPECT_FALSE(ParseLogLevel("").ok());
  EXPECT_FALSE(ParseLogLevel("INFO").ok());
}

TEST(LogTargetTest, ParsesSyslogAndStderr) {
  EXPECT_EQ(*ParseLogTarget("syslog"), LogTarget::kSyslog);
  EXPECT_EQ(*ParseLogTarget("stderr"), LogTarget::kStderr);
}

TEST(LogTargetTest, RejectsAnUnknownTargetListingTheChoices) {
  EXPECT_EQ(ParseLogTarget("file").status().message(),
            "unknown log target 'file' (expected syslog or stderr)");
}

TEST_F(LogTest, StderrLineCarriesIdentPidLevelAndMessage) {
  StderrCapture capture;
  MP_LOG_WARNING("4Bx1: from=<%s> size=%d", "a@example.org", 42);
  EXPECT_EQ(capture.Finish(), prefix_ + "warning: 4Bx1: from=<a@example.org> size=42\n");
}

TEST_F(LogTest, EachLevelIsNamedByItsWord) {
  StderrCapture capture;
  MP_LOG_DEBUG("d");
  MP_LOG_INFO("i");
  MP_LOG_WARNING("w");
  MP_LOG_ERROR("e");
  EXPECT_EQ(capture.Finish(), prefix_ + "debug: d\n" + prefix_ + "info: i\n" + prefix_ +
                                  "warning: w\n" + prefix_ + "error: e\n");
}

TEST_F(LogTest, MessagesBelowTheMinimumLevelAreDropped) {
  LogInit("mptest", LogTarget::kStderr, LogLevel::kWarning);
  StderrCapture capture;
  MP_LOG_DEBUG("dropped");
  MP_LOG_INFO("dropped");
  MP_LOG_WARNING("kept");
  MP_LOG_ERROR("kept too");
  EXPECT_EQ(capture.Finish(), prefix_ + "warning: kept\n" + prefix_ + "error: kept too\n");
}

TEST_F(LogTest, ControlCharactersAreEscapedSoAPeerCannotForgeALine) {
  StderrCapture capture;
  MP_LOG_INFO("peer said: %s", "EHLO x\r\nmptest[1]: error: forged\t\x01\x7f end");
  std::string output = capture.Finish();
  EXPECT_EQ(LineCount(output), 1u);
  EXPECT_EQ(output, prefix_ +
                        "info: peer said: EHLO x\\x0d\\x0amptest[1]: error: forged"
                        "\\x09\\x01\\x7f end\n");
}

TEST_F(LogTest, NonAsciiBytesPassThroughUnchanged) {
  StderrCapture capture;
  MP_LOG_INFO("Grüße");
  EXPECT_EQ(capture.Finish(), prefix_ + "info: Grüße\n");
}

TEST_F(LogTest, LongMessageIsTruncatedToOneLineOfAtMost4KiB) {
  std::string huge(10000, 'a');
  StderrCapture capture;
  MP_LOG_INFO("%s", huge.c_str());
  std::string output = capture.Finish();
  EXPECT_EQ(LineCount(output), 1u);
  EXPECT_LE(output.size(), 4096u);
  EXPECT_GT(output.size(), 4000u);
  EXPECT_THAT(output, StartsWith(prefix_ + "info: aaaa"));
  EXPECT_THAT(output, EndsWith("a...\n"));
}

TEST_F(LogTest, TruncationNeverSplitsAnEscapeSequence) {
  std::string newlines(3000, '\n');
  StderrCapture capture;
  MP_LOG_ERROR("%s", newlines.c_str());
  std::string output = capture.Finish();
  EXPECT_EQ(LineCount(output), 1u);
  EXPECT_LE(output.size(), 4096u);
  EXPECT_THAT(output, EndsWith("\\x0a...\n"));
}

TEST_F(LogTest, LoggingLeavesErrnoUnchanged) {
  StderrCapture capture;
  errno = ECONNRESET;
  MP_LOG_INFO("read failed");
  EXPECT_EQ(errno, ECONNRESET);
  EXPECT_EQ(LineCount(capture.Finish()), 1u);
}

}  // namespace
}  // namespace mailpulse
