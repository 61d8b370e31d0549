#include "shared/net/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace mailpulse {
namespace {

std::string Errno() { return std::strerror(errno); }

}  // namespace

StatusOr<RunAs> LookUpUser(const std::string& user) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* result = nullptr;
  if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &result) != 0 || result == nullptr) {
    return Status::Error("unknown user '" + user + "'");
  }
  return RunAs{pw.pw_uid, pw.pw_gid, user};
}

StatusOr<gid_t> LookUpGroup(const std::string& group) {
  std::vector<char> buf(16384);
  struct group gr {};
  struct group* result = nullptr;
  if (getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &result) != 0 || result == nullptr) {
    return Status::Error("unknown group '" + group + "'");
  }
  return gr.gr_gid;
}

StatusOr<RunAs> ChooseRunAs(const std::string& user, const std::string& default_user,
                            const std::string& key, bool* fell_back) {
  *fell_back = false;
  StatusOr<RunAs> r = LookUpUser(user);
  if (!r.ok() && user == default_user) {
    *fell_back = true;
    r = LookUpUser("nobody");
  }
  if (!r.ok()) return Status::Error(key + ": " + r.status().message());
  return r;
}

Status PrepareUnixSocketPath(const std::string& path) {
  const std::string dir = path.substr(0, path.rfind('/'));
  struct stat st {};
  if (!dir.empty() && stat(dir.c_str(), &st) != 0) {
    if (mkdir(dir.c_str(), 0755) != 0) {
      return Status::Error("cannot create socket directory " + dir + ": " + Errno());
    }
  }
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::Error(path + " exists and is not a socket; refusing to remove it");
    }
    if (unlink(path.c_str()) != 0) {
      return Status::Error("cannot remove stale socket " + path + ": " + Errno());
    }
  }
  return Status::Ok();
}

Status SecureUnixSocket(const std::string& path, uid_t owner, gid_t group) {
  if (chown(path.c_str(), owner, group) != 0) {
    return Status::Error("cannot chown socket " + path + ": " + Errno());
  }
  if (chmod(path.c_str(), 0660) != 0) {
    return Status::Error("cannot chmod socket " + path + ": " + Errno());
  }
  return Status::Ok();
}

Status DropPrivileges(const RunAs& run_as) {
  if (setgroups(1, &run_as.gid) != 0) return Status::Error("setgroups: " + Errno());
  if (setgid(run_as.gid) != 0) return Status::Error("setgid: " + Errno());
  if (setuid(run_as.uid) != 0) return Status::Error("setuid: " + Errno());
  if (run_as.uid != 0 && setuid(0) == 0) {
    return Status::Error("could regain root after dropping privileges; refusing to run");
  }
  return Status::Ok();
}

}  // namespace mailpulse
