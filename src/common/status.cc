#include "common/status.h"

#include <cstring>

namespace nexus {

std::string_view ErrnoName(int code) {
  switch (code) {
#define NX_E(x) \
  case x:       \
    return #x;
    NX_E(EPERM)
    NX_E(ENOENT)
    NX_E(EIO)
    NX_E(EBADF) NX_E(EAGAIN) NX_E(ENOMEM) NX_E(EACCES) NX_E(EBUSY) NX_E(EEXIST) NX_E(EXDEV)
        NX_E(ENOTDIR) NX_E(EISDIR) NX_E(EINVAL) NX_E(EFBIG) NX_E(ENOSPC) NX_E(EROFS) NX_E(EMLINK)
            NX_E(ERANGE) NX_E(ENAMETOOLONG) NX_E(ENOSYS) NX_E(ENOTEMPTY) NX_E(ELOOP) NX_E(ENODATA)
                NX_E(EBADMSG) NX_E(EOVERFLOW) NX_E(ENOTSUP) NX_E(ETIMEDOUT) NX_E(ECONNREFUSED)
                    NX_E(EDQUOT) NX_E(EDEADLK) NX_E(ENOLCK) NX_E(ESTALE) NX_E(ETXTBSY) NX_E(EINTR)
                        NX_E(E2BIG) NX_E(ENXIO) NX_E(ESPIPE) NX_E(EFAULT)
#undef NX_E
                            case Status::kConflictCode : return "CONFLICT";
    default:
      return {};
  }
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
