// MetaImpl's extended attributes: A<ino>X<name> holds the value of attribute `name`.
//
// Namespace rules follow Linux's xattr_permission():
//  - user.*: only on regular files and directories (others: EPERM to write, ENODATA to read);
//    reading needs read permission, writing needs write permission; on a sticky directory only
//    the owner (or root) may write.
//  - trusted.*: root only (EPERM to write; for others they do not exist: ENODATA, not listed).
//  - security.*: readable by everyone, writable by root only (no security module here).
//  - system.* (POSIX ACLs included) and unknown namespaces: EOPNOTSUPP.
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/clock.h"
#include "meta/meta_impl.h"

namespace nexus::meta {
namespace {

enum class XattrNs { kUser, kTrusted, kSecurity, kSystem, kUnknown };

XattrNs NamespaceOf(std::string_view name) {
  if (name.starts_with("user.")) return XattrNs::kUser;
  if (name.starts_with("trusted.")) return XattrNs::kTrusted;
  if (name.starts_with("security.")) return XattrNs::kSecurity;
  if (name.starts_with("system.")) return XattrNs::kSystem;
  return XattrNs::kUnknown;
}

std::string XattrName(Ino ino, std::string_view name) {
  return "xattr '" + std::string(name) + "' of inode " + std::to_string(ino);
}

// ERANGE for an empty or too long name, as setxattr(2) does.
Status ValidateXattrName(Ino ino, std::string_view name) {
  if (name.empty() || name.size() > kMaxXattrNameLen) {
    return Status::Errno(ERANGE, XattrName(ino, name.substr(0, 64)) + ": name length " +
                                     std::to_string(name.size()) + " not in [1, " +
                                     std::to_string(kMaxXattrNameLen) + "]");
  }
  return Status::OK();
}

bool IsPrivileged(const Context& ctx) { return ctx.uid == 0 || !ctx.check_permission; }

}  // namespace

Status MetaImpl::CheckXattrAccess(const Context& ctx, const Attr& attr, Ino ino,
                                  std::string_view name, bool write) {
  const std::string what = (write ? "set " : "get ") + XattrName(ino, name);
  switch (NamespaceOf(name)) {
    case XattrNs::kSystem:
      return Status::Errno(EOPNOTSUPP, what + ": system attributes (ACLs) are not supported");
    case XattrNs::kUnknown:
      return Status::Errno(EOPNOTSUPP, what + ": unknown namespace");
    case XattrNs::kTrusted:
      if (IsPrivileged(ctx)) return Status::OK();
      return write ? Status::Errno(EPERM, what + ": trusted attributes need root")
                   : Status::Errno(ENODATA, what + ": no such attribute");
    case XattrNs::kSecurity:
      if (write && !IsPrivileged(ctx)) {
        return Status::Errno(EPERM, what + ": security attributes need root");
      }
      return Status::OK();
    case XattrNs::kUser:
      break;
  }
  if (attr.type != FileType::kFile && attr.type != FileType::kDir) {
    return write ? Status::Errno(EPERM, what + ": user attributes need a file or directory")
                 : Status::Errno(ENODATA, what + ": no such attribute");
  }
  if (!ctx.check_permission) return Status::OK();
  if (write && attr.type == FileType::kDir && (attr.mode & S_ISVTX) && ctx.uid != 0 &&
      ctx.uid != attr.uid) {
    return Status::Errno(EPERM, what + ": sticky directory owned by another user");
  }
  return CheckPermission(ctx, attr, write ? W_OK : R_OK);
}

Result<std::string> MetaImpl::GetXattr(const Context& ctx, Ino ino, std::string_view name) {
  ino = Real(ino);
  NX_TRY(ValidateXattrName(ino, name));
  std::string value;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
    NX_TRY(CheckXattrAccess(ctx, attr, ino, name, false));
    std::optional<std::string> v;
    if (MayHaveXattrs(attr)) {
      NX_ASSIGN_OR_RETURN(v, txn.Get(keys::Xattr(ino, name)));
    }
    if (!v) return Status::Errno(ENODATA, "get " + XattrName(ino, name) + ": no such attribute");
    value = std::move(*v);
    return Status::OK();
  }));
  return value;
}

Status MetaImpl::SetXattr(const Context& ctx, Ino ino, std::string_view name,
                          std::string_view value, int flags) {
  ino = Real(ino);
  const std::string what = "set " + XattrName(ino, name);
  NX_TRY(ValidateXattrName(ino, name));
  if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) {
    return Status::InvalidArgument(what + ": unknown flags " + std::to_string(flags));
  }
  if (value.size() > kMaxXattrValueLen) {
    return Status::Errno(E2BIG, what + ": value of " + std::to_string(value.size()) +
                                    " bytes is larger than " + std::to_string(kMaxXattrValueLen));
  }
  return engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
    NX_TRY(CheckXattrAccess(ctx, attr, ino, name, true));
    const std::string key = keys::Xattr(ino, name);
    NX_ASSIGN_OR_RETURN(auto old, txn.Get(key));
    if (old && (flags & XATTR_CREATE)) return Status::Exists(what + ": it exists (XATTR_CREATE)");
    if (!old && (flags & XATTR_REPLACE)) {
      return Status::Errno(ENODATA, what + ": no such attribute (XATTR_REPLACE)");
    }
    NX_TRY(txn.Put(key, value));
    attr.flags |= Attr::kAttrFlagXattrs;
    attr.ctime = NowNanos();
    return PutAttrTxn(txn, ino, attr);
  });
}

Result<std::vector<std::string>> MetaImpl::ListXattr(const Context& ctx, Ino ino) {
  ino = Real(ino);
  std::vector<std::string> names;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    names.clear();
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
    if (!MayHaveXattrs(attr)) return Status::OK();
    const std::string prefix = keys::XattrPrefix(ino);
    return txn.ScanPrefix(prefix, 0, [&](std::string_view k, std::string_view) {
      std::string_view name = k.substr(prefix.size());
      if (NamespaceOf(name) != XattrNs::kTrusted || IsPrivileged(ctx)) names.emplace_back(name);
      return true;
    });
  }));
  return names;
}

Status MetaImpl::RemoveXattr(const Context& ctx, Ino ino, std::string_view name) {
  ino = Real(ino);
  NX_TRY(ValidateXattrName(ino, name));
  return engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
    NX_TRY(CheckXattrAccess(ctx, attr, ino, name, true));
    const std::string key = keys::Xattr(ino, name);
    NX_ASSIGN_OR_RETURN(auto old, txn.Get(key));
    if (!old) {
      return Status::Errno(ENODATA, "remove " + XattrName(ino, name) + ": no such attribute");
    }
    NX_TRY(txn.Delete(key));
    attr.ctime = NowNanos();
    return PutAttrTxn(txn, ino, attr);
  });
}

}  // namespace nexus::meta
