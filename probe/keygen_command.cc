#include "probe/keygen_command.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "shared/probe_token.h"

namespace mailpulse {
namespace {

std::string ErrnoText(int error) {
  char buf[128];
  return strerror_r(error, buf, sizeof buf);  // GNU strerror_r returns the text
}

Status WriteAll(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Error(ErrnoText(errno));
    done += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Status WriteNewKeyFile(const std::string& path) {
  std::string line = ProbeKey::Generate();
  if (line.empty()) return Status::Error("cannot make a key: the random generator failed");
  line += '\n';
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0) {
    const int error = errno;
    OPENSSL_cleanse(line.data(), line.size());
    if (error == EEXIST) {
      return Status::Error(path +
                           " already exists; not overwriting it (a key in use would be "
                           "lost): remove it first, or name a new file");
    }
    return Status::Error("cannot create key file " + path + ": " + ErrnoText(error));
  }
  Status status = WriteAll(fd, line);
  OPENSSL_cleanse(line.data(), line.size());
  if (status.ok() && ::fsync(fd) != 0) status = Status::Error(ErrnoText(errno));
  if (::close(fd) != 0 && status.ok()) status = Status::Error(ErrnoText(errno));
  if (!status.ok()) {
    ::unlink(path.c_str());  // ours: O_EXCL created it
    return Status::Error("cannot write key file " + path + ": " + status.message());
  }
  return Status::Ok();
}

CLI::App* AddKeygenCommand(CLI::App* app, std::string* path) {
  CLI::App* keygen = app->add_subcommand(
      "keygen", "Write a new probe key to FILE (created mode 0600; never overwritten)");
  keygen->add_option("FILE", *path, "The key file to create")->required();
  return keygen;
}

int RunKeygenCommand(const std::string& path) {
  if (Status s = WriteNewKeyFile(path); !s.ok()) {
    std::fprintf(stderr, "mailpulse-probe: keygen: %s\n", s.message().c_str());
    return 1;
  }
  std::printf(
      "mailpulse-probe: wrote a new probe key to %s (mode 0600); give the probe and "
      "every milter this same file, readable only by the user each runs as\n",
      path.c_str());
  return 0;
}

}  // namespace mailpulse
