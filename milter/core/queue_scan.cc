#include "milter/core/queue_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

namespace mailpulse {
namespace {

// Enough for the records before the time record (Postfix writes the size record, then the time)
// and for Sendmail's first lines.
constexpr std::size_t kHeadBytes = 2048;
// Postfix hashes queues one or two levels deep (hash_queue_depth); allow a little more.
constexpr int kMaxDepth = 4;

std::optional<std::int64_t> LeadingSeconds(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data() || value <= 0) return std::nullopt;
  return value;
}

bool Fail(QueueScan* scan, const std::string& what, int error) {
  scan->error = "cannot read " + what + ": " + std::strerror(error);
  scan->error_number = error;
  return false;
}

// Closes a directory stream however the walk leaves.
struct DirCloser {
  DIR* dir;
  ~DirCloser() {
    if (dir != nullptr) closedir(dir);
  }
};

bool IsDirectory(int dir_fd, const dirent& entry, bool* vanished) {
  if (entry.d_type != DT_UNKNOWN) return entry.d_type == DT_DIR;
  struct stat st;
  if (fstatat(dir_fd, entry.d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    *vanished = true;
    return false;
  }
  return S_ISDIR(st.st_mode);
}

}  // namespace

std::string_view MtaName(MtaKind kind) {
  return kind == MtaKind::kPostfix ? "postfix" : "sendmail";
}

const std::vector<std::string>& QueueNames(MtaKind kind) {
  static const std::vector<std::string> postfix = {"maildrop", "incoming", "active", "deferred",
                                                   "hold"};
  static const std::vector<std::string> sendmail = {"sendmail"};
  return kind == MtaKind::kPostfix ? postfix : sendmail;
}

std::optional<std::int64_t> PostfixArrivalTime(std::string_view head) {
  // A record: one type byte, the length in 7-bit groups (least significant first, the high bit
  // saying another follows), then the data.
  std::size_t pos = 0;
  while (pos < head.size()) {
    const char type = head[pos++];
    std::size_t length = 0;
    int shift = 0;
    for (;;) {
      if (pos >= head.size() || shift > 28) return std::nullopt;
      const auto byte = static_cast<unsigned char>(head[pos++]);
      length |= static_cast<std::size_t>(byte & 0x7f) << shift;
      shift += 7;
      if ((byte & 0x80) == 0) break;
    }
    if (length > head.size() - pos) return std::nullopt;
    const std::string_view data = head.substr(pos, length);
    pos += length;
    if (type == 'T') return LeadingSeconds(data);         // "SECONDS MICROSECONDS"
    if (type == 'M' || type == 'E') return std::nullopt;  // content or end: no time before it
  }
  return std::nullopt;
}

std::optional<std::int64_t> SendmailArrivalTime(std::string_view head) {
  while (!head.empty()) {
    const std::size_t eol = head.find('\n');
    if (eol == std::string_view::npos) return std::nullopt;  // a cut-off line proves nothing
    if (head.front() == 'T') return LeadingSeconds(head.substr(1, eol - 1));
    if (head.front() == '.') return std::nullopt;  // end of the control file
    head.remove_prefix(eol + 1);
  }
  return std::nullopt;
}

QueueScanner::QueueScanner(MtaKind kind, std::string directory)
    : kind_(kind), directory_(std::move(directory)) {}

std::int64_t QueueScanner::ArrivalOf(int dir_fd, const char* name, const struct stat& st,
                                     QueueScan* scan) {
  if (auto it = known_.find(name); it != known_.end() && it->second.inode == st.st_ino) {
    seen_.emplace(name, it->second);
    return it->second.arrival;
  }
  std::optional<std::int64_t> arrival;
  const int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0) {
    ++scan->files_opened;
    char buf[kHeadBytes];
    const ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n > 0) {
      const std::string_view head(buf, static_cast<std::size_t>(n));
      arrival = kind_ == MtaKind::kPostfix ? PostfixArrivalTime(head) : SendmailArrivalTime(head);
    }
  }
  // Unreadable (a maildrop file of another user) or without a time record: what showq shows.
  const std::int64_t value = arrival.value_or(static_cast<std::int64_t>(st.st_mtime));
  seen_.emplace(name, Known{st.st_ino, value});
  return value;
}

bool QueueScanner::Walk(int dir_fd, const std::string& path, int depth, QueueCount* count,
                        QueueScan* scan) {
  DirCloser dir{fdopendir(dir_fd)};
  if (dir.dir == nullptr) {
    const int error = errno;
    close(dir_fd);
    return Fail(scan, path, error);
  }
  while (const dirent* entry = readdir(dir.dir)) {
    if (entry->d_name[0] == '.') continue;
    bool vanished = false;
    if (IsDirectory(dir_fd, *entry, &vanished)) {
      if (depth >= kMaxDepth) continue;
      const std::string sub = path + "/" + entry->d_name;
      const int fd = openat(dir_fd, entry->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) {
        if (errno == ENOENT) continue;
        return Fail(scan, sub, errno);
      }
      if (!Walk(fd, sub, depth + 1, count, scan)) return false;
      continue;
    }
    if (vanished) continue;
    if (kind_ == MtaKind::kSendmail && std::strncmp(entry->d_name, "qf", 2) != 0) continue;
    struct stat st;
    if (fstatat(dir_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone
    if (!S_ISREG(st.st_mode)) continue;
    if (kind_ == MtaKind::kPostfix && (st.st_mode & S_IRWXU) != S_IRWXU) continue;  // unfinished
    const std::int64_t arrival = ArrivalOf(dir_fd, entry->d_name, st, scan);
    ++count->messages;
    if (count->oldest_arrival == 0 || arrival < count->oldest_arrival) {
      count->oldest_arrival = arrival;
    }
  }
  return true;
}

bool QueueScanner::ScanSendmail(QueueScan* scan) {
  // With a qf/ subdirectory, Sendmail keeps the control files there (and df/, xf/ beside it).
  std::string path = directory_;
  struct stat st;
  if (stat((directory_ + "/qf").c_str(), &st) == 0 && S_ISDIR(st.st_mode)) path += "/qf";
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Fail(scan, path, errno);
  // Only the top level: Sendmail queue directories are flat.
  scan->queues.push_back({"sendmail", 0, 0});
  return Walk(fd, path, kMaxDepth, &scan->queues.back(), scan);
}

QueueScan QueueScanner::Scan() {
  QueueScan scan;
  seen_.clear();
  bool ok = true;
  if (kind_ == MtaKind::kSendmail) {
    ok = ScanSendmail(&scan);
  } else {
    for (const std::string& queue : QueueNames(kind_)) {
      const std::string path = directory_ + "/" + queue;
      scan.queues.push_back({queue, 0, 0});
      const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      ok = fd >= 0 ? Walk(fd, path, 1, &scan.queues.back(), &scan) : Fail(&scan, path, errno);
      if (!ok) break;
    }
  }
  if (ok) {
    struct statvfs fs;
    if (statvfs(directory_.c_str(), &fs) != 0) {
      ok = Fail(&scan, "the filesystem of " + directory_, errno);
    } else {
      scan.free_bytes = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
      scan.free_inodes = static_cast<std::uint64_t>(fs.f_favail);
    }
  }
  scan.ok = ok;
  // After a failed scan the cache is kept: the next good one reuses what it still finds.
  if (ok) known_.swap(seen_);
  seen_.clear();
  return scan;
}

}  // namespace mailpulse
