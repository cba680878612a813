#include "common/status.h"

#include <cstring>

namespace nexus {

std::string_view ErrnoName(int code) {
  struct Name {
    int code;
    std::string_view name;
  };
  static constexpr Name kNames[] = {{EPERM, "EPERM"},
                                    {ENOENT, "ENOENT"},
                                    {EIO, "EIO"},
                                    {EBADF, "EBADF"},
                                    {EAGAIN, "EAGAIN"},
                                    {ENOMEM, "ENOMEM"},
                                    {EACCES, "EACCES"},
                                    {EBUSY, "EBUSY"},
                                    {EEXIST, "EEXIST"},
                                    {EXDEV, "EXDEV"},
                                    {ENOTDIR, "ENOTDIR"},
                                    {EISDIR, "EISDIR"},
                                    {EINVAL, "EINVAL"},
                                    {EFBIG, "EFBIG"},
                                    {ENOSPC, "ENOSPC"},
                                    {EROFS, "EROFS"},
                                    {EMLINK, "EMLINK"},
                                    {ERANGE, "ERANGE"},
                                    {ENAMETOOLONG, "ENAMETOOLONG"},
                                    {ENOSYS, "ENOSYS"},
                                    {ENOTEMPTY, "ENOTEMPTY"},
                                    {ELOOP, "ELOOP"},
                                    {ENODATA, "ENODATA"},
                                    {EBADMSG, "EBADMSG"},
                                    {EOVERFLOW, "EOVERFLOW"},
                                    {ENOTSUP, "ENOTSUP"},
                                    {ETIMEDOUT, "ETIMEDOUT"},
                                    {ECONNREFUSED, "ECONNREFUSED"},
                                    {EDQUOT, "EDQUOT"},
                                    {EDEADLK, "EDEADLK"},
                                    {ENOLCK, "ENOLCK"},
                                    {ESTALE, "ESTALE"},
                                    {ETXTBSY, "ETXTBSY"},
                                    {EINTR, "EINTR"},
                                    {E2BIG, "E2BIG"},
                                    {ENXIO, "ENXIO"},
                                    {ESPIPE, "ESPIPE"},
                                    {EFAULT, "EFAULT"}};
  if (code == Status::kConflictCode) return "CONFLICT";
  for (const Name& n : kNames) {
    if (n.code == code) return n.name;
  }
  return {};
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string name(ErrnoName(code_));
  if (name.empty()) name = "error " + std::to_string(code_);
  if (msg_.empty()) {
    if (code_ > 0 && code_ < 4096) return name + ": " + std::strerror(code_);
    return name;
  }
  return name + ": " + msg_;
}

Status Status::With(std::string_view context) const {
  if (ok()) return *this;
  if (msg_.empty()) return Status(code_, std::string(context));
  return Status(code_, std::string(context) + ": " + msg_);
}

}  // namespace nexus
