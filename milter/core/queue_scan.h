// QueueScanner counts an MTA's mail queue the way the MTA's own listing does, by walking the
// queue directories, without forking postqueue or mailq (which would cost a process and, for
// Postfix, a round trip through the showq daemon on every scrape).
//
// Postfix: the queues maildrop, incoming, active, deferred and hold under queue_directory,
// hashed subdirectories included. A file counts when it is a regular file whose owner bits are
// rwx: Postfix sets the execute bit when a queue file is complete, and showq skips the others
// (files still being written). The arrival time is the queue file's own time record (the first
// 'T' record, as showq reads it); the file's mtime cannot serve, since the queue manager moves
// a deferred file's mtime to its next delivery attempt. Files without a time record fall back to
// mtime, as showq does.
//
// Sendmail: the qf (control) files of one queue directory, or of its qf/ subdirectory when it
// has one; the arrival time is the control file's T line.
//
// Arrival times are cached by queue id and inode between scans: a message is opened once, when
// first seen, however long it stays and wherever Postfix moves it (a move between queues is a
// rename, which keeps both). A scan of a queue that did not change opens no file.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mailpulse {

enum class MtaKind { kPostfix, kSendmail };

std::string_view MtaName(MtaKind kind);  // "postfix", "sendmail"

// The queues of one MTA in the order they are reported: Postfix's five, or "sendmail".
const std::vector<std::string>& QueueNames(MtaKind kind);

// The arrival time (Unix seconds) in the first bytes of a queue file: Postfix's first 'T'
// record before the message content, Sendmail's T line. nullopt when the bytes hold none.
std::optional<std::int64_t> PostfixArrivalTime(std::string_view head);
std::optional<std::int64_t> SendmailArrivalTime(std::string_view head);

struct QueueCount {
  std::string queue;
  std::int64_t messages = 0;
  std::int64_t oldest_arrival = 0;  // Unix seconds; 0 when the queue is empty
};

struct QueueScan {
  bool ok = false;
  std::string error;               // when !ok: what could not be read and why
  int error_number = 0;            // when !ok: the errno behind it (EACCES: see the docs)
  std::vector<QueueCount> queues;  // every queue of QueueNames(kind), in that order
  std::uint64_t free_bytes = 0;    // of the queue's filesystem, available to non-root users
  std::uint64_t free_inodes = 0;   // likewise
  std::int64_t files_opened = 0;   // queue files read for their arrival time in this scan
};

class QueueScanner {
 public:
  QueueScanner(MtaKind kind, std::string directory);

  MtaKind kind() const { return kind_; }
  const std::string& directory() const { return directory_; }

  // One walk of every queue. Files that vanish during the walk (delivered, moved) are skipped;
  // a directory that cannot be read makes the whole scan fail, naming it and why.
  QueueScan Scan();

 private:
  struct Known {
    ino_t inode;
    std::int64_t arrival;
  };
  bool Walk(int dir_fd, const std::string& path, int depth, QueueCount* count, QueueScan* scan);
  bool ScanSendmail(QueueScan* scan);
  std::int64_t ArrivalOf(int dir_fd, const char* name, const struct stat& st, QueueScan* scan);

  MtaKind kind_;
  std::string directory_;
  std::unordered_map<std::string, Known> known_;  // of the previous scan
  std::unordered_map<std::string, Known> seen_;   // of this scan; becomes known_
};

}  // namespace mailpulse
