#include "milter/core/queue_scan.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <utime.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace mailpulse {
namespace {

namespace fs = std::filesystem;

// One Postfix record: type, length in 7-bit groups (low first), data.
std::string Record(char type, const std::string& data) {
  std::string out(1, type);
  std::size_t n = data.size();
  do {
    unsigned char byte = n & 0x7f;
    n >>= 7;
    if (n != 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (n != 0);
  return out + data;
}

// A queue file as Postfix's cleanup writes it: size, time, sender, recipient, content, end.
std::string PostfixQueueFile(std::int64_t arrival, std::size_t body_bytes = 10) {
  std::string f = Record('C', "             " + std::to_string(body_bytes) + " 0 0 1 0");
  if (arrival > 0) f += Record('T', std::to_string(arrival) + " 123456");
  f += Record('F', "") + Record('S', "alice@example.org") + Record('R', "bob@example.net");
  f += Record('M', "") + Record('N', std::string(body_bytes, 'x')) + Record('X', "");
  return f + Record('E', "");
}

class QueueScanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailpulse-queue-scan-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }

  // A file at root_/relative with `content`, mode `mode` and mtime `mtime` (0: now).
  void Put(const std::string& relative, const std::string& content, mode_t mode = 0700,
           time_t mtime = 0) {
    const fs::path path = root_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    if (mtime != 0) {
      const utimbuf times{mtime, mtime};
      ASSERT_EQ(utime(path.c_str(), &times), 0);
    }
  }
  void MakePostfixQueues() {
    for (const std::string& q : QueueNames(MtaKind::kPostfix)) fs::create_directories(root_ / q);
  }

  fs::path root_;
};

const QueueCount& Of(const QueueScan& scan, const std::string& queue) {
  for (const QueueCount& q : scan.queues) {
    if (q.queue == queue) return q;
  }
  static const QueueCount none{"(missing)", -1, -1};
  return none;
}

TEST(PostfixArrivalTimeTest, ReadsTheFirstTimeRecord) {
  EXPECT_EQ(PostfixArrivalTime(PostfixQueueFile(1764633600)), 1764633600);
  // A long record before it: the length takes two 7-bit groups.
  const std::string file = Record('A', std::string(300, 'a')) + PostfixQueueFile(1700000000);
  EXPECT_EQ(PostfixArrivalTime(file), 1700000000);
}

TEST(PostfixArrivalTimeTest, NoTimeBeforeTheContentOrACutOffRecordIsNone) {
  EXPECT_EQ(PostfixArrivalTime(PostfixQueueFile(0)), std::nullopt);
  const std::string file = PostfixQueueFile(1764633600);
  EXPECT_EQ(PostfixArrivalTime(file.substr(0, 20)), std::nullopt);  // inside the T record
  EXPECT_EQ(PostfixArrivalTime(""), std::nullopt);
  EXPECT_EQ(PostfixArrivalTime(Record('T', "soon")), std::nullopt);
  EXPECT_EQ(PostfixArrivalTime(std::string("T\xff\xff\xff\xff\xff\x01", 7)), std::nullopt);
}

TEST(SendmailArrivalTimeTest, ReadsTheTLine) {
  EXPECT_EQ(SendmailArrivalTime("V8\nT1764633600\nK0\nN0\nP30000\n"), 1764633600);
  EXPECT_EQ(SendmailArrivalTime("V8\nK0\n.\nT1764633600\n"), std::nullopt);  // after the end
  EXPECT_EQ(SendmailArrivalTime("V8\nT17646"), std::nullopt);                // cut off
}

TEST_F(QueueScanTest, CountsEveryPostfixQueueWithHashedSubdirectoriesAndTheOldestArrival) {
  MakePostfixQueues();
  Put("active/4A1B2C3D", PostfixQueueFile(1764633600));
  Put("active/4A1B2C3E", PostfixQueueFile(1764633500));
  Put("deferred/7/7F00AA11", PostfixQueueFile(1764600000));
  Put("deferred/C/C0FFEE12", PostfixQueueFile(1764620000));
  Put("hold/ABCDEF01", PostfixQueueFile(1764630000));
  Put("maildrop/1234ABCD", PostfixQueueFile(1764633000), 0744);
  Put("incoming/99999999", PostfixQueueFile(1764633700), 0600);  // still being written
  Put("defer/7/7F00AA11", "reason");                             // not a queue
  QueueScanner scanner(MtaKind::kPostfix, root_.string());
  const QueueScan scan = scanner.Scan();
  ASSERT_TRUE(scan.ok) << scan.error;
  ASSERT_EQ(scan.queues.size(), 5u);
  EXPECT_EQ(Of(scan, "active").messages, 2);
  EXPECT_EQ(Of(scan, "active").oldest_arrival, 1764633500);
  EXPECT_EQ(Of(scan, "deferred").messages, 2);
  EXPECT_EQ(Of(scan, "deferred").oldest_arrival, 1764600000);
  EXPECT_EQ(Of(scan, "hold").messages, 1);
  EXPECT_EQ(Of(scan, "maildrop").messages, 1);
  EXPECT_EQ(Of(scan, "incoming").messages, 0);
  EXPECT_EQ(Of(scan, "incoming").oldest_arrival, 0);
  EXPECT_EQ(scan.files_opened, 6);
  EXPECT_GT(scan.free_bytes, 0u);
  EXPECT_GT(scan.free_inodes, 0u);
}

TEST_F(QueueScanTest, TheArrivalIsTheTimeRecordNotTheMtimeThatDeferralMoves) {
  MakePostfixQueues();
  const time_t next_attempt = 1764640000;  // what qmgr sets on a deferred file
  Put("deferred/A/A1", PostfixQueueFile(1764600000), 0700, next_attempt);
  Put("hold/B2", PostfixQueueFile(0), 0700, 1764610000);  // no time record: mtime, as showq
  QueueScanner scanner(MtaKind::kPostfix, root_.string());
  const QueueScan scan = scanner.Scan();
  ASSERT_TRUE(scan.ok) << scan.error;
  EXPECT_EQ(Of(scan, "deferred").oldest_arrival, 1764600000);
  EXPECT_EQ(Of(scan, "hold").oldest_arrival, 1764610000);
}

TEST_F(QueueScanTest, AMessageIsReadOnceWhereverItMovesAndAgainWhenItsIdIsReused) {
  MakePostfixQueues();
  Put("incoming/ID1", PostfixQueueFile(1764600000));
  QueueScanner scanner(MtaKind::kPostfix, root_.string());
  EXPECT_EQ(scanner.Scan().files_opened, 1);
  fs::rename(root_ / "incoming/ID1", root_ / "active/ID1");  // what qmgr does
  QueueScan scan = scanner.Scan();
  EXPECT_EQ(scan.files_opened, 0);
  EXPECT_EQ(Of(scan, "active").messages, 1);
  EXPECT_EQ(Of(scan, "active").oldest_arrival, 1764600000);
  // Delivered, and another file takes the name: a different inode (ID2 holds on to the freed
  // one while the new ID1 is made), so it is read again.
  fs::remove(root_ / "active/ID1");
  Put("incoming/ID2", "");
  Put("active/ID1", PostfixQueueFile(1764650000));
  fs::remove(root_ / "incoming/ID2");
  scan = scanner.Scan();
  EXPECT_EQ(scan.files_opened, 1);
  EXPECT_EQ(Of(scan, "active").oldest_arrival, 1764650000);
}

TEST_F(QueueScanTest, AnUnreadableQueueFailsTheScanNamingTheDirectory) {
  MakePostfixQueues();
  fs::remove(root_ / "deferred");
  Put("deferred", "a file where a directory should be");
  QueueScanner scanner(MtaKind::kPostfix, root_.string());
  const QueueScan scan = scanner.Scan();
  EXPECT_FALSE(scan.ok);
  EXPECT_EQ(scan.error, "cannot read " + (root_ / "deferred").string() + ": Not a directory");

  QueueScanner absent(MtaKind::kPostfix, (root_ / "nowhere").string());
  EXPECT_EQ(absent.Scan().error,
            "cannot read " + (root_ / "nowhere/maildrop").string() + ": No such file or directory");
}

TEST_F(QueueScanTest, SendmailCountsControlFilesFlatOrInTheQfSubdirectory) {
  Put("qfAB12345", "V8\nT1764600000\nK0\n.\n", 0600);
  Put("qfAB12346", "V8\nT1764610000\nK0\n.\n", 0600);
  Put("dfAB12345", "the body", 0600);
  Put("tfAB12347", "V8\nT1764500000\n", 0600);  // being written
  QueueScanner flat(MtaKind::kSendmail, root_.string());
  QueueScan scan = flat.Scan();
  ASSERT_TRUE(scan.ok) << scan.error;
  ASSERT_EQ(scan.queues.size(), 1u);
  EXPECT_EQ(Of(scan, "sendmail").messages, 2);
  EXPECT_EQ(Of(scan, "sendmail").oldest_arrival, 1764600000);

  fs::create_directories(root_ / "split/qf");
  fs::create_directories(root_ / "split/df");
  Put("split/qf/qfCD00001", "V8\nT1764620000\n.\n", 0600);
  Put("split/df/dfCD00001", "the body", 0600);
  QueueScanner split(MtaKind::kSendmail, (root_ / "split").string());
  scan = split.Scan();
  ASSERT_TRUE(scan.ok) << scan.error;
  EXPECT_EQ(Of(scan, "sendmail").messages, 1);
  EXPECT_EQ(Of(scan, "sendmail").oldest_arrival, 1764620000);
}

}  // namespace
}  // namespace mailpulse
