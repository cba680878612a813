// MetaImpl::Rename: flags 0, RENAME_NOREPLACE and RENAME_EXCHANGE, in one transaction.
//
// Loops: moving a directory to another parent walks from the new parent up to the root through
// Attr.parent, reading every ancestor's attributes inside the transaction. A concurrent rename
// that moves any of those ancestors writes one of the attribute records read here, so one of the
// two transactions conflicts and re-runs against the new tree. This is what keeps concurrent
// renames from creating a cycle or orphaning a directory.
#include <fcntl.h>
#include <linux/fs.h>
#include <unistd.h>

#include "common/clock.h"
#include "meta/meta_impl.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

namespace nexus::meta {
namespace {

// A chain of parents longer than this is damaged (a directory tree this deep is not usable).
constexpr int kMaxDepth = 1 << 20;

std::string EntryName(Ino parent, std::string_view name) {
  return "'" + std::string(name) + "' in directory " + std::to_string(parent);
}

}  // namespace

struct MetaImpl::RenameOp {
  Ino parent = 0;
  std::string_view name;
  Ino new_parent = 0;
  std::string_view new_name;
  uint32_t flags = 0;
  std::string what;
  int64_t now = 0;
  Attr pdir, npdir;  // npdir is unused when new_parent == parent
  Ino src = 0, dst = 0;
  Attr sattr, dattr;

  Attr& NewDir() { return new_parent == parent ? pdir : npdir; }
  bool CrossDir() const { return new_parent != parent; }
};

Status MetaImpl::CheckNotAncestorTxn(kv::Txn& txn, Ino dir, Ino new_parent) {
  Ino cur = new_parent;
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    if (cur == dir) {
      return Status::InvalidArgument("directory " + std::to_string(dir) +
                                     " would move into its own subtree (below inode " +
                                     std::to_string(new_parent) + ")");
    }
    if (cur == kRootIno) return Status::OK();
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, cur));
    if (attr.type != FileType::kDir || attr.parent == 0 || attr.parent == cur) {
      return Status::Corruption("directory " + std::to_string(cur) + " has a damaged parent (" +
                                std::to_string(attr.parent) + ")");
    }
    cur = attr.parent;
  }
  return Status::Errno(
      ELOOP, "the parents of directory " + std::to_string(new_parent) + " do not reach the root");
}

Status MetaImpl::MoveLinkTxn(kv::Txn& txn, Ino ino, Attr& attr, Ino from, Ino to) {
  if (from == to) return Status::OK();
  if (attr.type == FileType::kDir || attr.parent != 0) {
    attr.parent = to;
    return Status::OK();
  }
  NX_TRY(AddParentCountTxn(txn, ino, from, -1));
  NX_TRY(AddParentCountTxn(txn, ino, to, 1));
  return Status::OK();
}

Status MetaImpl::Rename(const Context& ctx, Ino parent, std::string_view name, Ino new_parent,
                        std::string_view new_name, uint32_t flags) {
  RenameOp op;
  op.parent = Real(parent);
  op.name = name;
  op.new_parent = Real(new_parent);
  op.new_name = new_name;
  op.flags = flags;
  op.what = "rename " + EntryName(op.parent, name) + " to " + EntryName(op.new_parent, new_name);
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) ||
      ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))) {
    return Status::InvalidArgument(op.what + ": bad flags " + std::to_string(flags));
  }
  NX_TRY(ValidateName(name).With(op.what));
  NX_TRY(ValidateName(new_name).With(op.what));
  return engine_->Update([&](kv::Txn& txn) -> Status {
    op.now = NowNanos();
    op.dst = 0;
    return RenameTxn(txn, ctx, op);
  });
}

// Reads both directories and both entries, applies the checks, and hands the change to
// ExchangeTxn or (after ReplaceTxn removed an existing target) moves the source entry.
Status MetaImpl::RenameTxn(kv::Txn& txn, const Context& ctx, RenameOp& op) {
  // Two rounds of reads (one round trip each on a networked engine): both directories and both
  // entries, then the inodes those entries name.
  const std::string skey = keys::Dentry(op.parent, op.name);
  const std::string dkey = keys::Dentry(op.new_parent, op.new_name);
  std::vector<std::string> first = {skey, dkey, keys::Attr(op.parent)};
  if (op.CrossDir()) first.push_back(keys::Attr(op.new_parent));
  NX_ASSIGN_OR_RETURN(auto values, txn.MultiGet(first));
  const std::optional<std::string>& sv = values[0];
  const std::optional<std::string>& dv = values[1];
  NX_TRY(DecodeAttrTxnValue(values[2], op.parent, &op.pdir));
  NX_TRY(CheckDirWrite(ctx, op.pdir, op.parent, op.what));
  if (op.CrossDir()) {
    NX_TRY(DecodeAttrTxnValue(values[3], op.new_parent, &op.npdir));
    NX_TRY(CheckDirWrite(ctx, op.npdir, op.new_parent, op.what));
  }
  if (!sv) return Status::NotFound(op.what + ": the source does not exist");
  FileType type;
  NX_TRY(keys::DecodeDentry(*sv, &type, &op.src).With(op.what));
  if (dv) {
    NX_TRY(keys::DecodeDentry(*dv, &type, &op.dst).With(op.what));
    if (op.flags & RENAME_NOREPLACE) return Status::Exists(op.what + ": the target exists");
    if (op.dst == op.src) {  // two names of one inode: nothing to do
      NX_TRY(GetAttrTxn(txn, op.src));
      return Status::OK();
    }
    NX_ASSIGN_OR_RETURN(auto attrs, GetAttrsTxn(txn, {op.src, op.dst}));
    op.sattr = attrs[0];
    op.dattr = attrs[1];
  } else if (op.flags & RENAME_EXCHANGE) {
    return Status::NotFound(op.what + ": the target does not exist");
  } else {
    NX_ASSIGN_OR_RETURN(op.sattr, GetAttrTxn(txn, op.src));
  }
  NX_TRY(CheckSticky(ctx, op.pdir, op.sattr, op.what));
  if (op.dst) NX_TRY(CheckSticky(ctx, op.NewDir(), op.dattr, op.what));
  const bool sdir = op.sattr.type == FileType::kDir;
  if (sdir && op.CrossDir()) {  // its ".." changes
    NX_TRY(CheckPermission(ctx, op.sattr, W_OK).With(op.what));
    NX_TRY(CheckNotAncestorTxn(txn, op.src, op.new_parent).With(op.what));
  }
  if (op.flags & RENAME_EXCHANGE) return ExchangeTxn(txn, ctx, op);
  if (op.dst) NX_TRY(ReplaceTxn(txn, ctx, op));
  NX_TRY(txn.Delete(skey));
  NX_TRY(txn.Put(dkey, keys::EncodeDentry(op.sattr.type, op.src)));
  if (sdir && op.CrossDir()) {
    --op.pdir.nlink;
    ++op.NewDir().nlink;
  }
  NX_TRY(MoveLinkTxn(txn, op.src, op.sattr, op.parent, op.new_parent));
  op.sattr.ctime = op.now;
  NX_TRY(PutAttrTxn(txn, op.src, op.sattr));
  op.pdir.mtime = op.pdir.ctime = op.now;
  NX_TRY(PutAttrTxn(txn, op.parent, op.pdir));
  if (!op.CrossDir()) return Status::OK();
  op.npdir.mtime = op.npdir.ctime = op.now;
  return PutAttrTxn(txn, op.new_parent, op.npdir);
}

// The target exists and is replaced: types must agree and a directory must be empty.
Status MetaImpl::ReplaceTxn(kv::Txn& txn, const Context& ctx, RenameOp& op) {
  const bool sdir = op.sattr.type == FileType::kDir;
  const bool ddir = op.dattr.type == FileType::kDir;
  if (sdir && !ddir) {
    return Status::Errno(ENOTDIR, op.what + ": the target is not a directory");
  }
  if (!sdir && ddir) return Status::Errno(EISDIR, op.what + ": the target is a directory");
  if (ddir) {
    bool empty = true;
    NX_TRY(txn.ScanPrefix(keys::DentryPrefix(op.dst), 1, [&](std::string_view, std::string_view) {
      empty = false;
      return false;
    }));
    if (!empty) return Status::Errno(ENOTEMPTY, op.what + ": the target directory is not empty");
    --op.NewDir().nlink;
  }
  return DropLinkTxn(txn, op.dst, op.dattr, op.new_parent, op.now);
}

Status MetaImpl::ExchangeTxn(kv::Txn& txn, const Context& ctx, RenameOp& op) {
  const bool sdir = op.sattr.type == FileType::kDir;
  const bool ddir = op.dattr.type == FileType::kDir;
  if (ddir && op.CrossDir()) {
    NX_TRY(CheckPermission(ctx, op.dattr, W_OK).With(op.what));
    NX_TRY(CheckNotAncestorTxn(txn, op.dst, op.parent).With(op.what));
  }
  NX_TRY(txn.Put(keys::Dentry(op.parent, op.name), keys::EncodeDentry(op.dattr.type, op.dst)));
  NX_TRY(
      txn.Put(keys::Dentry(op.new_parent, op.new_name), keys::EncodeDentry(op.sattr.type, op.src)));
  if (op.CrossDir()) {
    if (sdir) {
      --op.pdir.nlink;
      ++op.npdir.nlink;
    }
    if (ddir) {
      --op.npdir.nlink;
      ++op.pdir.nlink;
    }
    NX_TRY(MoveLinkTxn(txn, op.src, op.sattr, op.parent, op.new_parent));
    NX_TRY(MoveLinkTxn(txn, op.dst, op.dattr, op.new_parent, op.parent));
  }
  op.sattr.ctime = op.dattr.ctime = op.now;
  NX_TRY(PutAttrTxn(txn, op.src, op.sattr));
  NX_TRY(PutAttrTxn(txn, op.dst, op.dattr));
  op.pdir.mtime = op.pdir.ctime = op.now;
  NX_TRY(PutAttrTxn(txn, op.parent, op.pdir));
  if (!op.CrossDir()) return Status::OK();
  op.npdir.mtime = op.npdir.ctime = op.now;
  return PutAttrTxn(txn, op.new_parent, op.npdir);
}

}  // namespace nexus::meta
