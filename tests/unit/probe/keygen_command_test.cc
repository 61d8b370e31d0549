// `mailpulse-probe keygen` (probe/keygen_command.h): a new owner-only key file, never an
// overwrite, never the key on the terminal.
#include "probe/keygen_command.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "shared/probe_token.h"

namespace mailpulse {
namespace {

class KeygenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailpulse-keygen-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/probe.key";
  }
  void TearDown() override {
    std::remove(path_.c_str());
    std::remove((dir_ + "/link").c_str());
    rmdir(dir_.c_str());
  }
  std::string Contents() const {
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }
  std::string dir_;
  std::string path_;
};

TEST_F(KeygenTest, WritesALoadableKeyOnlyItsOwnerMayRead) {
  ASSERT_TRUE(WriteNewKeyFile(path_).ok());
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string text = Contents();
  EXPECT_EQ(text.size(), 65u);
  EXPECT_EQ(text.back(), '\n');
  EXPECT_TRUE(ProbeKey::Load(path_).ok());
}

TEST_F(KeygenTest, RefusesToOverwriteAnExistingFileAndSaysWhy) {
  std::ofstream(path_) << "the key in use\n";
  const Status status = WriteNewKeyFile(path_);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find(path_ + " already exists"), std::string::npos)
      << status.message();
  EXPECT_EQ(Contents(), "the key in use\n");
}

TEST_F(KeygenTest, RefusesASymlinkEvenToNothing) {
  ASSERT_EQ(symlink(path_.c_str(), (dir_ + "/link").c_str()), 0);
  EXPECT_FALSE(WriteNewKeyFile(dir_ + "/link").ok());
  EXPECT_NE(access(path_.c_str(), F_OK), 0) << "the link's target was created";
}

TEST_F(KeygenTest, MissingDirectoryIsAnErrorNamingTheFile) {
  const Status status = WriteNewKeyFile(dir_ + "/no/such/dir/key");
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find(dir_ + "/no/such/dir/key"), std::string::npos);
}

TEST_F(KeygenTest, PrintsThePathButNeverTheKey) {
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const int code = RunKeygenCommand(path_);
  const std::string out = testing::internal::GetCapturedStdout();
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_EQ(code, 0) << err;
  const std::string key = Contents().substr(0, 64);
  EXPECT_NE(out.find(path_), std::string::npos);
  EXPECT_EQ(out.find(key), std::string::npos);
  EXPECT_EQ(err.find(key), std::string::npos);
  EXPECT_EQ(RunKeygenCommand(path_), 1) << "a second run must not overwrite";
}

}  // namespace
}  // namespace mailpulse
