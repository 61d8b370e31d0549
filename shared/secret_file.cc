#include "shared/secret_file.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mailpulse {
namespace {

// strerror(3) without its shared buffer (GNU strerror_r returns the text).
std::string ErrnoText(int error) {
  char buf[128];
  return strerror_r(error, buf, sizeof buf);
}

// Up to kMaxSecretLength + 1 bytes of `fd` into *out (one more than allowed, so the caller can
// tell "too long"). The stack buffer is wiped: the secret should not outlive its string.
Status ReadBounded(int fd, std::string* out) {
  char buf[512];
  out->reserve(kMaxSecretLength + 1);  // no reallocation leaves copies in freed memory
  Status status;
  while (out->size() <= kMaxSecretLength) {
    const std::size_t want = std::min(sizeof buf, kMaxSecretLength + 1 - out->size());
    const ssize_t n = ::read(fd, buf, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = Status::Error(ErrnoText(errno));
      break;
    }
    if (n == 0) break;
    out->append(buf, static_cast<std::size_t>(n));
  }
  OPENSSL_cleanse(buf, sizeof buf);
  return status;
}

}  // namespace

StatusOr<std::string> ReadSecretFile(const std::string& path, std::string_view what_view) {
  const std::string what(what_view);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return Status::Error("cannot read " + what + " " + path + ": " + ErrnoText(errno));
  std::string secret;
  struct stat st {};
  Status status;
  if (fstat(fd, &st) != 0) {
    status = Status::Error("cannot stat " + what + " " + path + ": " + ErrnoText(errno));
  } else if (!S_ISREG(st.st_mode)) {
    status = Status::Error(what + " " + path + " is not a regular file");
  } else if ((st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
    status = Status::Error(what + " " + path + " is readable by others; chmod 600 it");
  } else if (Status read = ReadBounded(fd, &secret); !read.ok()) {
    status = Status::Error("cannot read " + what + " " + path + ": " + read.message());
  }
  ::close(fd);
  if (status.ok() && secret.size() > kMaxSecretLength) {
    status = Status::Error(what + " " + path + " is longer than " +
                           std::to_string(kMaxSecretLength) + " bytes");
  }
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (status.ok() && secret.empty()) status = Status::Error(what + " " + path + " is empty");
  if (status.ok() && secret.find_first_of(std::string_view("\0\n", 2)) != std::string::npos) {
    status = Status::Error(what + " " + path + " holds more than one line");
  }
  if (!status.ok()) {
    OPENSSL_cleanse(secret.data(), secret.size());
    return status;
  }
  return secret;
}

}  // namespace mailpulse
