// MetaImpl's namespace operations: lookup, creation of every node type, links, removal,
// directory listing. Each is one engine transaction; inode numbers are allocated before it.
//
// Link bookkeeping: a directory's nlink is 2 plus its subdirectories, and Attr.parent names
// its parent. A non-directory with one link has Attr.parent set and no A<ino>P records; once it
// has two or more, Attr.parent is 0 and A<ino>P<parent> counts its links per directory (back to
// Attr.parent when one link remains).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/clock.h"
#include "meta/meta_impl.h"

namespace nexus::meta {
namespace {

// Hard links of one file (EMLINK past it). Subdirectories are not limited: a directory's
// nlink is a 32-bit count, as with ext4's dir_nlink.
constexpr uint32_t kMaxLinks = 65000;

std::string InoName(Ino ino) { return "inode " + std::to_string(ino); }

std::string EntryName(Ino parent, std::string_view name) {
  return "'" + std::string(name) + "' in directory " + std::to_string(parent);
}

// The mode bits a new node gets, with the gid: umask, and the setgid-directory rules of the
// kernel's inode_init_owner() and mode_strip_sgid().
void InitOwner(const Context& ctx, const Attr& dir, FileType type, uint32_t mode, Attr* a) {
  if (type == FileType::kSymlink) {
    mode = 0777;
  } else {
    mode &= (type == FileType::kDir) ? 01777 : 07777;
    mode &= ~(ctx.umask & 0777);
  }
  a->uid = ctx.uid;
  a->gid = ctx.gid;
  if (dir.mode & S_ISGID) {
    a->gid = dir.gid;
    if (type == FileType::kDir) {
      mode |= S_ISGID;
    } else if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) && ctx.uid != 0 &&
               !ctx.InGroup(dir.gid)) {
      mode &= ~S_ISGID;
    }
  }
  a->mode = mode;
}

// Errors that only a transaction body returns (never an engine's commit), so the transaction
// surely did not commit.
bool RefusedByBody(const Status& s) {
  switch (s.code()) {
    case EEXIST:
    case ENOENT:
    case ENOTDIR:
    case EACCES:
    case EPERM:
    case ENOSPC:
      return true;
    default:
      return false;
  }
}

Status NotDir(Ino ino, std::string_view op) {
  return Status::Errno(ENOTDIR, std::string(op) + ": " + InoName(ino) + " is not a directory");
}

Result<std::pair<FileType, Ino>> DecodeEntry(std::string_view v, Ino parent,
                                             std::string_view name) {
  FileType type;
  Ino ino = 0;
  Status s = keys::DecodeDentry(v, &type, &ino);
  if (!s.ok()) return Err(s.With(EntryName(parent, name)));
  return std::make_pair(type, ino);
}

}  // namespace

Status MetaImpl::CheckDirWrite(const Context& ctx, const Attr& dir, Ino ino, std::string_view op) {
  if (dir.type != FileType::kDir) return NotDir(ino, op);
  if (dir.nlink == 0) {
    return Status::NotFound(std::string(op) + ": directory " + std::to_string(ino) +
                            " was removed");
  }
  return CheckPermission(ctx, dir, W_OK | X_OK)
      .With(std::string(op) + " in directory " + std::to_string(ino));
}

Status MetaImpl::CheckSticky(const Context& ctx, const Attr& dir, const Attr& child,
                             std::string_view what) {
  if (!(dir.mode & S_ISVTX) || !ctx.check_permission || ctx.uid == 0 || ctx.uid == child.uid ||
      ctx.uid == dir.uid) {
    return Status::OK();
  }
  return Status::Errno(EPERM, std::string(what) + ": sticky directory, uid " +
                                  std::to_string(ctx.uid) +
                                  " owns neither the entry nor the "
                                  "directory");
}

Status MetaImpl::AddInodeTxn(kv::Txn& txn) {
  const std::string key = keys::Counter("totalInodes");
  const uint64_t limit = format_.inodes;
  if (limit == 0) return txn.Add(key, 1);
  NX_ASSIGN_OR_RETURN(auto v, txn.Get(key));
  const uint64_t used = v ? keys::DecodeU64(*v) : 0;
  if (used + 1 > limit) {
    return Status::NoSpace("volume '" + format_.name + "' has reached its limit of " +
                           std::to_string(limit) + " inodes");
  }
  return txn.Put(key, keys::EncodeU64(used + 1));
}

Status MetaImpl::CreateNodeTxn(kv::Txn& txn, const Context& ctx, Ino parent, std::string_view name,
                               Ino ino, const NewNode& node, Entry* out, Ino* existing,
                               std::optional<std::string>* dir_hint) {
  const std::string what = "create " + EntryName(parent, name);
  *existing = 0;
  const std::string dkey = keys::Dentry(parent, name);
  std::optional<std::string> hint;
  if (dir_hint) hint.swap(*dir_hint);  // the first attempt only: a retry reads
  NX_ASSIGN_OR_RETURN(DirAndEntry read,
                      GetDirAndEntryTxn(txn, parent, dkey, hint ? &*hint : nullptr));
  Attr& dir = read.dir;
  NX_TRY(CheckDirWrite(ctx, dir, parent, what));
  if (read.entry) {
    NX_ASSIGN_OR_RETURN(auto entry, DecodeEntry(*read.entry, parent, name));
    *existing = entry.second;
    return Status::Exists(what + ": exists");
  }
  NX_TRY(AddInodeTxn(txn));
  const int64_t now = NowNanos();
  Attr a;
  a.type = node.type;
  InitOwner(ctx, dir, node.type, node.mode, &a);
  a.nlink = node.type == FileType::kDir ? 2 : 1;
  a.length = node.type == FileType::kDir       ? 4096
             : node.type == FileType::kSymlink ? node.target.size()
                                               : 0;
  if (node.type == FileType::kBlockDev || node.type == FileType::kCharDev) a.rdev = node.rdev;
  a.atime = a.mtime = a.ctime = now;
  a.parent = parent;
  NX_TRY(PutAttrTxn(txn, ino, a));
  NX_TRY(txn.Put(dkey, keys::EncodeDentry(node.type, ino)));
  if (node.type == FileType::kSymlink) NX_TRY(txn.Put(keys::Symlink(ino), node.target));
  if (node.type == FileType::kDir) ++dir.nlink;
  dir.mtime = dir.ctime = now;
  NX_TRY(PutAttrTxn(txn, parent, dir));
  out->ino = ino;
  out->attr = a;
  return Status::OK();
}

Result<Entry> MetaImpl::CreateNode(const Context& ctx, Ino parent, std::string_view name,
                                   const NewNode& node, int open_flags, Ino* existing) {
  parent = Real(parent);
  NX_TRY(ValidateName(name).With("create in directory " + std::to_string(parent)));
  NX_ASSIGN_OR_RETURN(Ino ino, AllocIno());
  const bool open = open_flags >= 0;
  std::unique_lock<std::mutex> stripe(OpenStripe(ino), std::defer_lock);
  if (open) stripe.lock();
  Entry out;
  std::optional<std::string> hint;
  if (hint_misses_) hint = TakeMissHint(keys::Dentry(parent, name));
  if (open && local_opens_) {  // counted first, as in Open
    std::lock_guard<std::mutex> lock(open_mu_);
    ++open_counts_[ino];
  }
  Status s = engine_->Update([&](kv::Txn& txn) -> Status {
    NX_TRY(CreateNodeTxn(txn, ctx, parent, name, ino, node, &out, existing, &hint));
    return open && !local_opens_ ? RegisterOpenTxn(txn, ino) : Status::OK();
  });
  if (!s.ok()) {
    if (open && local_opens_) {  // nothing named the new inode: no unlink could have kept it
      std::lock_guard<std::mutex> lock(open_mu_);
      open_counts_.erase(ino);
    }
    if (RefusedByBody(s)) {  // surely not committed: give the number back to the batch
      std::lock_guard<std::mutex> lock(alloc_mu_);
      if (next_ino_ == ino + 1) next_ino_ = ino;
    }
    return Err(s);
  }
  if (open && !local_opens_) {
    std::lock_guard<std::mutex> lock(open_mu_);
    ++open_counts_[ino];
  }
  out.attr = Expose(out.attr);
  return out;
}

Result<Entry> MetaImpl::Mknod(const Context& ctx, Ino parent, std::string_view name, FileType type,
                              uint32_t mode, uint32_t rdev) {
  if (type == FileType::kDir || type == FileType::kSymlink) {
    return Err(Status::InvalidArgument("mknod " + EntryName(parent, name) +
                                       ": use mkdir or symlink for this type"));
  }
  if ((type == FileType::kBlockDev || type == FileType::kCharDev) && ctx.check_permission &&
      ctx.uid != 0) {
    return Err(Status::Errno(
        EPERM, "mknod " + EntryName(parent, name) + ": creating a device needs root"));
  }
  Ino existing = 0;
  return CreateNode(ctx, parent, name, NewNode{type, mode, rdev, {}}, -1, &existing);
}

Result<Entry> MetaImpl::Mkdir(const Context& ctx, Ino parent, std::string_view name,
                              uint32_t mode) {
  Ino existing = 0;
  return CreateNode(ctx, parent, name, NewNode{FileType::kDir, mode, 0, {}}, -1, &existing);
}

Result<Entry> MetaImpl::Symlink(const Context& ctx, Ino parent, std::string_view name,
                                std::string_view target) {
  if (target.empty()) {
    return Err(Status::NotFound("symlink " + EntryName(parent, name) + ": empty target"));
  }
  if (target.size() > kMaxSymlinkLen || target.find('\0') != std::string_view::npos) {
    return Err(Status::Errno(ENAMETOOLONG, "symlink " + EntryName(parent, name) + ": target of " +
                                               std::to_string(target.size()) + " bytes"));
  }
  Ino existing = 0;
  return CreateNode(ctx, parent, name, NewNode{FileType::kSymlink, 0777, 0, target}, -1, &existing);
}

// An existing name is opened instead (without O_EXCL); if it disappears between the failed
// create and the open, the create is tried again.
Result<Entry> MetaImpl::Create(const Context& ctx, Ino parent, std::string_view name, uint32_t mode,
                               int flags) {
  constexpr int kAttempts = 10;
  for (int attempt = 0;; ++attempt) {
    Ino existing = 0;
    auto created = CreateNode(ctx, parent, name, NewNode{FileType::kFile, mode, 0, {}},
                              flags & ~(O_CREAT | O_EXCL), &existing);
    if (created || created.error().code() != EEXIST || (flags & O_EXCL) || existing == 0) {
      return created;
    }
    auto opened = Open(ctx, ExposeIno(existing), flags | O_CREAT);
    if (opened) return Entry{ExposeIno(existing), *opened};
    if (!opened.error().IsNotFound() || attempt + 1 >= kAttempts) return Err(opened.error());
  }
}

Result<Entry> MetaImpl::Lookup(const Context& ctx, Ino parent, std::string_view name) {
  parent = Real(parent);
  if (name.size() > kMaxNameLen) NX_TRY(ValidateName(name));
  Entry out;
  const bool dots = name == "." || name == "..";
  const std::string dkey = dots ? std::string() : keys::Dentry(parent, name);
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    DirAndEntry read;
    if (dots) {
      NX_ASSIGN_OR_RETURN(read.dir, GetAttrTxn(txn, parent));
    } else {
      NX_ASSIGN_OR_RETURN(read, GetDirAndEntryTxn(txn, parent, dkey));
    }
    const Attr& dir = read.dir;
    if (dir.type != FileType::kDir) return NotDir(parent, "lookup '" + std::string(name) + "'");
    NX_TRY(CheckPermission(ctx, dir, X_OK).With("lookup " + EntryName(parent, name)));
    Ino ino = 0;
    if (name == ".") {
      ino = parent;
    } else if (name == "..") {
      ino = parent == Real(kRootIno) ? parent : dir.parent;
    } else {
      if (!read.entry) {
        if (hint_misses_) RememberMiss(dkey, read.dir_value);
        return Status::NotFound(EntryName(parent, name) + " does not exist");
      }
      NX_ASSIGN_OR_RETURN(auto entry, DecodeEntry(*read.entry, parent, name));
      ino = entry.second;
    }
    NX_ASSIGN_OR_RETURN(out.attr, GetAttrTxn(txn, ino));
    out.ino = ino;
    return Status::OK();
  }));
  out.ino = ExposeIno(out.ino);
  out.attr = Expose(out.attr);
  return out;
}

Result<Attr> MetaImpl::GetAttr(Ino ino) {
  ino = Real(ino);
  Attr attr;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(attr, GetAttrTxn(txn, ino));
    return Status::OK();
  }));
  return Expose(attr);
}

Status MetaImpl::Access(const Context& ctx, Ino ino, int mask) {
  ino = Real(ino);
  return engine_->View([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
    if (mask == F_OK) return Status::OK();
    return CheckPermission(ctx, attr, mask).With("access " + InoName(ino));
  });
}

Result<std::string> MetaImpl::ReadLink(Ino ino) {
  ino = Real(ino);
  std::string target;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(auto v, txn.Get(keys::Symlink(ino)));
    if (v) {
      target = std::move(*v);
      return Status::OK();
    }
    NX_TRY(GetAttrTxn(txn, ino));
    return Status::InvalidArgument("readlink " + InoName(ino) + ": not a symbolic link");
  }));
  return target;
}

Result<int64_t> MetaImpl::AddParentCountTxn(kv::Txn& txn, Ino ino, Ino parent, int64_t delta) {
  const std::string key = keys::Parent(ino, parent);
  NX_ASSIGN_OR_RETURN(auto v, txn.Get(key));
  int64_t count = v && v->size() == 4 ? GetBE32(v->data()) : 0;
  count = std::max<int64_t>(count + delta, 0);
  if (count == 0) {
    NX_TRY(txn.Delete(key));
    return count;
  }
  std::string value;
  PutBE32(&value, static_cast<uint32_t>(count));
  NX_TRY(txn.Put(key, value));
  return count;
}

Result<Entry> MetaImpl::Link(const Context& ctx, Ino ino, Ino new_parent,
                             std::string_view new_name) {
  ino = Real(ino);
  new_parent = Real(new_parent);
  const std::string what = "link " + InoName(ino) + " as " + EntryName(new_parent, new_name);
  NX_TRY(ValidateName(new_name).With(what));
  Entry out;
  const std::string dkey = keys::Dentry(new_parent, new_name);
  NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(auto values, txn.MultiGet({keys::Attr(ino), keys::Attr(new_parent), dkey}));
    Attr attr, dir;
    NX_TRY(DecodeAttrTxnValue(values[0], ino, &attr));
    if (attr.type == FileType::kDir) return Status::Errno(EPERM, what + ": is a directory");
    if (attr.nlink == 0) return Status::NotFound(what + ": the file was removed");
    if (attr.nlink >= kMaxLinks) return Status::Errno(EMLINK, what + ": too many links");
    NX_TRY(DecodeAttrTxnValue(values[1], new_parent, &dir));
    NX_TRY(CheckDirWrite(ctx, dir, new_parent, what));
    if (values[2]) return Status::Exists(what + ": exists");
    if (attr.parent != 0) {  // the second link: switch to per-parent counts
      NX_TRY(AddParentCountTxn(txn, ino, attr.parent, 1));
      attr.parent = 0;
    }
    NX_TRY(AddParentCountTxn(txn, ino, new_parent, 1));
    const int64_t now = NowNanos();
    ++attr.nlink;
    attr.ctime = now;
    dir.mtime = dir.ctime = now;
    NX_TRY(PutAttrTxn(txn, ino, attr));
    NX_TRY(PutAttrTxn(txn, new_parent, dir));
    NX_TRY(txn.Put(dkey, keys::EncodeDentry(attr.type, ino)));
    out.ino = ino;
    out.attr = attr;
    return Status::OK();
  }));
  out.ino = ExposeIno(out.ino);
  out.attr = Expose(out.attr);
  return out;
}

Status MetaImpl::DropLinkTxn(kv::Txn& txn, Ino ino, Attr& attr, Ino parent, int64_t now,
                             CounterDeltas* deltas) {
  attr.ctime = now;
  if (attr.type == FileType::kDir || attr.nlink <= 1) {
    attr.nlink = 0;
    return RemoveInodeTxn(txn, ino, attr, deltas);
  }
  --attr.nlink;
  if (attr.parent == 0) {
    NX_ASSIGN_OR_RETURN(int64_t left, AddParentCountTxn(txn, ino, parent, -1));
    if (attr.nlink == 1) {  // one link left: back to Attr.parent
      std::string last = left > 0 ? keys::Parent(ino, parent) : "";
      const std::string dropped = keys::Parent(ino, parent);
      if (last.empty()) {
        NX_TRY(
            txn.ScanPrefix(keys::ParentPrefix(ino), 0, [&](std::string_view k, std::string_view) {
              if (k != dropped) last = std::string(k);
              return last.empty();
            }));
      }
      if (!last.empty()) {
        attr.parent = GetBE64(last.data() + last.size() - 8);
        NX_TRY(txn.Delete(last));
      }
    }
  }
  return PutAttrTxn(txn, ino, attr);
}

Status MetaImpl::RemoveEntryTxn(kv::Txn& txn, const Context& ctx, Ino parent, Attr& dir,
                                std::string_view name, Ino ino, Attr& attr, int64_t now,
                                std::string_view what, CounterDeltas* deltas) {
  NX_TRY(CheckSticky(ctx, dir, attr, what));
  NX_TRY(txn.Delete(keys::Dentry(parent, name)));
  const bool is_dir = attr.type == FileType::kDir;
  NX_TRY(DropLinkTxn(txn, ino, attr, parent, now, deltas));
  if (is_dir && dir.nlink > 2) --dir.nlink;
  dir.mtime = dir.ctime = now;
  return Status::OK();
}

Status MetaImpl::Unlink(const Context& ctx, Ino parent, std::string_view name) {
  parent = Real(parent);
  const std::string what = "unlink " + EntryName(parent, name);
  NX_TRY(ValidateName(name).With(what));
  const std::string dkey = keys::Dentry(parent, name);
  return engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(DirAndEntry read, GetDirAndEntryTxn(txn, parent, dkey));
    Attr& dir = read.dir;
    NX_TRY(CheckDirWrite(ctx, dir, parent, what));
    if (!read.entry) return Status::NotFound(what + ": does not exist");
    NX_ASSIGN_OR_RETURN(auto entry, DecodeEntry(*read.entry, parent, name));
    const Ino ino = entry.second;
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
    if (attr.type == FileType::kDir) return Status::Errno(EISDIR, what + ": is a directory");
    NX_TRY(RemoveEntryTxn(txn, ctx, parent, dir, name, ino, attr, NowNanos(), what));
    return PutAttrTxn(txn, parent, dir);
  });
}

Status MetaImpl::Rmdir(const Context& ctx, Ino parent, std::string_view name) {
  parent = Real(parent);
  const std::string what = "rmdir " + EntryName(parent, name);
  if (name == "..") return Status::Errno(ENOTEMPTY, what + ": not empty");
  NX_TRY(ValidateName(name).With(what));
  const std::string dkey = keys::Dentry(parent, name);
  return engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(DirAndEntry read, GetDirAndEntryTxn(txn, parent, dkey));
    Attr& dir = read.dir;
    NX_TRY(CheckDirWrite(ctx, dir, parent, what));
    if (!read.entry) return Status::NotFound(what + ": does not exist");
    NX_ASSIGN_OR_RETURN(auto entry, DecodeEntry(*read.entry, parent, name));
    const Ino ino = entry.second;
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
    if (attr.type != FileType::kDir) return NotDir(ino, what);
    bool empty = true;
    NX_TRY(txn.ScanPrefix(keys::DentryPrefix(ino), 1, [&](std::string_view, std::string_view) {
      empty = false;
      return false;
    }));
    if (!empty) return Status::Errno(ENOTEMPTY, what + ": not empty");
    NX_TRY(RemoveEntryTxn(txn, ctx, parent, dir, name, ino, attr, NowNanos(), what));
    return PutAttrTxn(txn, parent, dir);
  });
}

// One call reads at most `limit` entries (and their attributes), so its memory is bounded by
// the caller's page size.
Status MetaImpl::ReadDir(const Context& ctx, Ino dir, std::string_view after, size_t limit,
                         bool plus, std::vector<DirEntry>* out) {
  dir = Real(dir);
  return engine_->View([&](kv::Txn& txn) -> Status {
    out->clear();
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, dir));
    if (attr.type != FileType::kDir) return NotDir(dir, "readdir");
    NX_TRY(CheckPermission(ctx, attr, R_OK).With("readdir " + InoName(dir)));
    const std::string prefix = keys::DentryPrefix(dir);
    std::string begin = prefix;
    if (!after.empty()) begin.append(after).push_back('\0');  // strictly after `after`
    Status bad;
    NX_TRY(txn.Scan(begin, PrefixEnd(prefix), limit, [&](std::string_view k, std::string_view v) {
      DirEntry e;
      e.name = std::string(k.substr(prefix.size()));
      bad = keys::DecodeDentry(v, &e.type, &e.ino);
      if (!bad.ok()) return false;
      out->push_back(std::move(e));
      return true;
    }));
    if (!bad.ok()) return bad.With("readdir " + InoName(dir));
    if (!plus || out->empty()) return Status::OK();
    std::vector<std::string> akeys;
    akeys.reserve(out->size());
    for (const DirEntry& e : *out) akeys.push_back(keys::Attr(e.ino));
    NX_ASSIGN_OR_RETURN(auto attrs, txn.MultiGet(akeys));
    for (size_t i = 0; i < out->size(); ++i) {
      DirEntry& e = (*out)[i];
      if (!attrs[i])
        return Status::NotFound("readdir " + InoName(dir) + ": entry '" + e.name +
                                "' points to missing " + InoName(e.ino));
      NX_TRY(keys::DecodeAttr(*attrs[i], &e.attr).With(InoName(e.ino)));
      e.attr = Expose(e.attr);
    }
    return Status::OK();
  });
}

}  // namespace nexus::meta
