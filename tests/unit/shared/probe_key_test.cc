// The probe key (shared/probe_token.h) and the secret file rules it shares with the AUTH
// password file (shared/secret_file.h): which files are trusted, and that no error shows the
// secret.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>

#include "shared/probe_token.h"
#include "shared/secret_file.h"

namespace mailpulse {
namespace {

constexpr char kKeyText[] = "file-key-0123456789abcdef0123456789";
constexpr char kId[] = "5f2b8c1d9e3a4b6c7d8e9f0a1b2c3d4e";

class ProbeKeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailpulse-key-XXXXXX";
    const int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void Write(const std::string& text, mode_t mode) {
    std::ofstream(path_, std::ios::binary | std::ios::trunc) << text;
    ASSERT_EQ(chmod(path_.c_str(), mode), 0);
  }
  // The error of loading the file; fails the test if it loads, or if the error shows the key
  // or does not name the file.
  std::string LoadError() {
    StatusOr<ProbeKey> key = ProbeKey::Load(path_);
    if (key.ok()) {
      ADD_FAILURE() << "key file " << path_ << " was accepted";
      return "";
    }
    const std::string message = key.status().message();
    EXPECT_NE(message.find(path_), std::string::npos) << message;
    EXPECT_EQ(message.find("0123456789abcdef"), std::string::npos) << "the error shows the key";
    return message;
  }
  std::string path_;
};

// Two keys are the same if they sign the same token the same way.
std::string MacOf(const ProbeKey& key) { return SignProbeToken(key, kId, 1, "probe-1").value(); }

TEST_F(ProbeKeyFileTest, OwnerOnlyFileGivesTheKeyWithoutTheLineEnd) {
  for (const char* line_end : {"", "\n", "\r\n"}) {
    Write(std::string(kKeyText) + line_end, 0600);
    StatusOr<ProbeKey> key = ProbeKey::Load(path_);
    ASSERT_TRUE(key.ok()) << key.status().message();
    EXPECT_EQ(MacOf(*key), MacOf(ProbeKey::FromBytes(kKeyText).value()));
  }
}

TEST_F(ProbeKeyFileTest, OwnerReadOnlyFileIsAccepted) {
  Write(kKeyText, 0400);
  EXPECT_TRUE(ProbeKey::Load(path_).ok());
}

TEST_F(ProbeKeyFileTest, FileReadableByGroupOrOthersIsRefusedNamingTheFile) {
  for (mode_t mode : {0640, 0604, 0644, 0660}) {
    SCOPED_TRACE(mode);
    Write(kKeyText, mode);
    EXPECT_NE(LoadError().find("readable by others; chmod 600 it"), std::string::npos);
  }
}

TEST_F(ProbeKeyFileTest, ShortKeyIsRefused) {
  Write("0123456789abcdef0123456789abcde\n", 0600);  // 31 bytes
  EXPECT_NE(LoadError().find("shorter than 32 bytes"), std::string::npos);
  Write("0123456789abcdef0123456789abcdef\n", 0600);  // 32 bytes
  EXPECT_TRUE(ProbeKey::Load(path_).ok());
}

TEST_F(ProbeKeyFileTest, EmptyFileOrOneWithTwoLinesIsRefused) {
  Write("\n", 0600);
  EXPECT_NE(LoadError().find("is empty"), std::string::npos);
  Write(std::string(kKeyText) + "\n0123456789abcdef0123456789abcdef\n", 0600);
  EXPECT_NE(LoadError().find("more than one line"), std::string::npos);
  Write(std::string(kKeyText) + std::string(1, '\0') + "0123456789abcdef", 0600);
  EXPECT_NE(LoadError().find("more than one line"), std::string::npos);
}

TEST_F(ProbeKeyFileTest, OverLongFileIsRefused) {
  Write(std::string(kMaxSecretLength, 'k'), 0600);
  EXPECT_TRUE(ProbeKey::Load(path_).ok());
  Write(std::string(kMaxSecretLength + 1, 'k'), 0600);
  EXPECT_NE(LoadError().find("longer than 4096 bytes"), std::string::npos);
}

TEST_F(ProbeKeyFileTest, MissingFileIsAnErrorNamingIt) {
  std::remove(path_.c_str());
  EXPECT_NE(LoadError().find("cannot read key file"), std::string::npos);
}

TEST_F(ProbeKeyFileTest, DirectoryIsNotAKeyFile) {
  std::remove(path_.c_str());
  ASSERT_EQ(mkdir(path_.c_str(), 0700), 0);
  EXPECT_NE(LoadError().find("not a regular file"), std::string::npos);
  rmdir(path_.c_str());
}

TEST_F(ProbeKeyFileTest, PasswordFileErrorsCallItAPasswordFile) {
  Write("s3cret\n", 0644);
  StatusOr<std::string> secret = ReadSecretFile(path_, "password file");
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(secret.status().message(),
            "password file " + path_ + " is readable by others; chmod 600 it");
}

TEST(ProbeKeyTest, KeyOfFewerThan32BytesIsRefused) {
  EXPECT_FALSE(ProbeKey::FromBytes("").ok());
  EXPECT_FALSE(ProbeKey::FromBytes(std::string(31, 'k')).ok());
  EXPECT_TRUE(ProbeKey::FromBytes(std::string(32, 'k')).ok());
}

TEST(ProbeKeyTest, GeneratedKeysAre64LowercaseHexDigitsAndFresh) {
  std::set<std::string> keys;
  for (int i = 0; i < 8; ++i) {
    const std::string key = ProbeKey::Generate();
    ASSERT_EQ(key.size(), 64u);
    EXPECT_EQ(key.find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_TRUE(ProbeKey::FromBytes(key).ok());
    keys.insert(key);
  }
  EXPECT_EQ(keys.size(), 8u);
}

TEST(ProbeKeyTest, CopiedAndMovedKeysSignAlike) {
  const ProbeKey original = ProbeKey::FromBytes(kKeyText).value();
  ProbeKey copy = original;
  ProbeKey moved = std::move(copy);
  ProbeKey assigned = ProbeKey::FromBytes(std::string(40, 'x')).value();
  assigned = moved;
  ProbeKey move_assigned = ProbeKey::FromBytes(std::string(40, 'y')).value();
  move_assigned = std::move(assigned);
  EXPECT_EQ(MacOf(moved), MacOf(original));
  EXPECT_EQ(MacOf(move_assigned), MacOf(original));
}

}  // namespace
}  // namespace mailpulse
