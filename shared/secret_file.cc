#include "shared/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mailpulse {
namespace {

// strerror(3) without its shared buffer (GNU strerror_r returns the text).
std::string ErrnoText(int error) {
  char buf[128];
  return strerror_r(error, buf, sizeof buf);
}

}  // namespace

StatusOr<std::string> ReadSecretFile(const std::string& path, std::string_view what_view) {
  const std::string what(what_view);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return Status::Error("cannot read " + what + " " + path + ": " + ErrnoText(errno));
  }
  std::string secret;
  struct stat st {};
  Status status;
  if (fstat(fd, &st) != 0) {
    status = Status::Error("cannot stat " + what + " " + path + ": " + ErrnoText(errno));
  } else if (!S_ISREG(st.st_mode)) {
    status = Status::Error(what + " " + path + " is not a regular file");
  } else if ((st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
    status = Status::Error(what + " " + path + " is readable by others; chmod 600 it");
  } else {
    char buf[kMaxSecretLength + 1];
    ssize_t n = 0;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 && secret.size() <= kMaxSecretLength) {
      secret.append(buf, static_cast<std::size_t>(n));
    }
    if (n < 0) status = Status::Error("cannot read " + what + " " + path + ": " + ErrnoText(errno));
  }
  ::close(fd);
  if (!status.ok()) return status;
  if (secret.size() > kMaxSecretLength) {
    return Status::Error(what + " " + path + " is longer than 4096 bytes");
  }
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) {
    secret.pop_back();
  }
  if (secret.empty()) return Status::Error(what + " " + path + " is empty");
  if (secret.find('\0') != std::string::npos || secret.find('\n') != std::string::npos) {
    return Status::Error(what + " " + path + " holds more than one line");
  }
  return secret;
}

Status CheckPrivateFile(const std::string& path, std::string_view what_view) {
  const std::string what(what_view);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::Error("cannot read " + what + " " + path + ": " + ErrnoText(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status::Error(what + " " + path + " is not a regular file");
  if ((st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
    return Status::Error(what + " " + path + " is readable by others; chmod 600 it");
  }
  return Status::Ok();
}

}  // namespace mailpulse
