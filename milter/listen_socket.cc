#include "milter/listen_socket.h"

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace mailpulse {
namespace {

std::string Errno() { return std::strerror(errno); }

}  // namespace

Status SetNoDelayOnListeners(std::uint16_t port) {
  DIR* fds = opendir("/proc/self/fd");
  if (fds == nullptr) return Status::Error("cannot list /proc/self/fd: " + Errno());
  int found = 0;
  while (dirent* entry = readdir(fds)) {
    const int fd = std::atoi(entry->d_name);
    if (fd <= 2 || fd == dirfd(fds)) continue;
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) continue;
    std::uint16_t bound = 0;
    if (addr.ss_family == AF_INET) {
      bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    } else {
      continue;
    }
    if (bound != port) continue;
    const int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++found;
  }
  closedir(fds);
  if (found == 0) {
    return Status::Error("no listening socket on port " + std::to_string(port) +
                         " to set TCP_NODELAY on");
  }
  return Status::Ok();
}

}  // namespace mailpulse
