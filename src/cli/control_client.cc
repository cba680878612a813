#include "cli/control_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "cli/cli_util.h"

namespace nexus::cli {
namespace {

constexpr long kFuseSuperMagic = 0x65735546;

Result<std::string> RealPath(const std::string& p) {
  char buf[PATH_MAX];
  if (realpath(p.c_str(), buf) == nullptr) return Err(Errno("resolve " + p));
  return std::string(buf);
}

}  // namespace

Result<MountRef> FindMount(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return Err(Errno("stat " + path));
  // Start from the directory that holds the entry (the path itself for a directory).
  std::string start = path;
  if (!S_ISDIR(st.st_mode)) {
    std::string parent = std::filesystem::path(path).parent_path().string();
    start = parent.empty() ? "." : parent;
  }
  NX_ASSIGN_OR_RETURN(std::string dir, RealPath(start));
  while (dir != "/") {
    // `dir` is absolute and canonical: its parent is everything before the last '/'.
    const size_t slash = dir.rfind('/');
    std::string up = dir.substr(0, slash == 0 ? 1 : slash);
    struct stat ust;
    if (stat(up.c_str(), &ust) != 0 || ust.st_dev != st.st_dev) break;
    dir = up;
  }
  struct statfs sfs;
  if (statfs(dir.c_str(), &sfs) != 0) return Err(Errno("statfs " + dir));
  MountRef m;
  m.root = dir;
  m.control = dir;
  if (m.control.back() != '/') m.control.push_back('/');
  m.control.append(".control");
  struct stat cst;
  if (static_cast<long>(sfs.f_type) != kFuseSuperMagic || lstat(m.control.c_str(), &cst) != 0 ||
      !S_ISREG(cst.st_mode)) {
    return Err(ENOTSUP, path + " is not on a NexusFS mount (the file system at " + dir +
                            " has no .control file)");
  }
  return m;
}

Result<nlohmann::json> ControlRequest(const std::string& control, const nlohmann::json& request,
                                      const std::function<void(uint64_t)>& on_progress) {
  int fd = open(control.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Err(Errno("open " + control));
  const std::string text = request.dump();
  size_t sent = 0;
  while (sent < text.size()) {
    ssize_t w = write(fd, text.data() + sent, text.size() - sent);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      Status s = Errno("write request to " + control);
      close(fd);
      return Err(s);
    }
    sent += static_cast<size_t>(w);
  }
  std::string pending;
  nlohmann::json final_line;
  bool have_final = false;
  char buf[64 << 10];
  while (true) {
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      Status s = Errno("read answer from " + control);
      close(fd);
      return Err(s);
    }
    if (r == 0) break;
    pending.append(buf, static_cast<size_t>(r));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      auto j = nlohmann::json::parse(pending.substr(0, nl), nullptr, false);
      pending.erase(0, nl + 1);
      if (!j.is_object()) continue;
      if (j.contains("progress") && !j.contains("ok")) {
        if (on_progress && j["progress"].is_number_unsigned()) {
          on_progress(j["progress"].get<uint64_t>());
        }
        continue;
      }
      final_line = std::move(j);
      have_final = true;
    }
  }
  close(fd);
  if (!have_final || !final_line.contains("ok") || !final_line["ok"].is_boolean()) {
    return Err(EIO, "the mount gave no answer through " + control);
  }
  if (!final_line["ok"].get<bool>()) {
    int code = final_line.contains("errno") && final_line["errno"].is_number_integer()
                   ? final_line["errno"].get<int>()
                   : EIO;
    std::string msg = final_line.contains("error") && final_line["error"].is_string()
                          ? final_line["error"].get<std::string>()
                          : "failed";
    return Err(code, msg);
  }
  return final_line;
}

}  // namespace nexus::cli
