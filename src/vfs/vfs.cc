// Vfs: namespace operations, attributes, xattrs and statfs.
#include "vfs/vfs.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "chunk/chunk_store.h"
#include "common/logging.h"
#include "meta/meta.h"
#include "vfs/vfs_handles.h"

namespace nexus::vfs {

Result<AtimeMode> ParseAtimeMode(std::string_view text) {
  if (text == "noatime") return AtimeMode::kNoAtime;
  if (text == "relatime") return AtimeMode::kRelAtime;
  if (text == "strictatime") return AtimeMode::kStrictAtime;
  return Err(EINVAL,
             "atime mode '" + std::string(text) + "' is not one of noatime, relatime, strictatime");
}

std::string_view AtimeModeName(AtimeMode mode) {
  switch (mode) {
    case AtimeMode::kNoAtime:
      return "noatime";
    case AtimeMode::kRelAtime:
      return "relatime";
    case AtimeMode::kStrictAtime:
      return "strictatime";
  }
  return "relatime";
}

Vfs::Vfs(meta::Meta* meta, chunk::ChunkStore* chunks, VfsOptions options)
    : meta_(meta), chunks_(chunks), options_(std::move(options)) {
  if (options_.readdir_batch == 0) options_.readdir_batch = 1000;
}

Vfs::~Vfs() {
  // Requests of .control still running use this Vfs: wait for them.
  std::unique_lock<std::mutex> lock(control_mu_);
  control_cv_.wait(lock, [this] { return control_running_ == 0; });
}

Status Vfs::CheckWritable() const {
  if (options_.read_only) return Status::Errno(EROFS, "the file system is mounted read-only");
  return Status::OK();
}

Status Vfs::CheckNotInternal(Ino parent, std::string_view name) const {
  if (InternalIno(parent, name)) {
    return Status::Errno(EPERM, "'" + std::string(name) + "' is an internal file of nexusfs");
  }
  return Status::OK();
}

Result<Entry> Vfs::Lookup(const Context& ctx, Ino parent, std::string_view name) {
  Count(Op::kLookup);
  if (auto ino = InternalIno(parent, name)) {
    NX_ASSIGN_OR_RETURN(Attr attr, InternalAttr(*ino));
    return Entry{*ino, attr};
  }
  const uint64_t commits = chunks_->Commits();
  NX_ASSIGN_OR_RETURN(Entry e, meta_->Lookup(ctx, parent, name));
  MergePending(e.ino, &e.attr, commits);
  return e;
}

Result<Attr> Vfs::GetAttr(Ino ino) {
  Count(Op::kGetAttr);
  if (IsInternalIno(ino)) return InternalAttr(ino);
  const uint64_t commits = chunks_->Commits();
  NX_ASSIGN_OR_RETURN(Attr attr, meta_->GetAttr(ino));
  MergePending(ino, &attr, commits);
  return attr;
}

Result<Attr> Vfs::SetAttr(const Context& ctx, Ino ino, const meta::SetAttrRequest& req,
                          uint64_t fh) {
  Count(Op::kSetAttr);
  // `echo REQUEST > .control` truncates first: a no-op on the request file.
  if (ino == kControlIno && req.mask == meta::kSetSize && req.size == 0) return InternalAttr(ino);
  if (IsInternalIno(ino)) return Err(EPERM, "internal files cannot be changed");
  NX_TRY(CheckWritable());
  meta::SetAttrRequest rest = req;
  // Buffered writes commit first: their commit sets mtime, which must not override a time set
  // now (cp -p sets times before close), nor outlive a truncate.
  if (req.mask & (meta::kSetSize | meta::kSetMtime | meta::kSetMtimeNow)) NX_TRY(FlushData(ino));
  if (req.mask & meta::kSetSize) {
    Context truncate_ctx = ctx;
    if (fh) {
      auto h = FindFile(fh);
      if (h && h->ino == ino && h->Writable()) truncate_ctx.check_permission = false;
    }
    auto truncated = meta_->Truncate(truncate_ctx, ino, req.size);
    chunks_->Invalidate(ino);
    FileChanged();
    if (!truncated) return Err(truncated.error());
    rest.mask &= ~meta::kSetSize;
    if (rest.mask == 0) {
      RememberSeen(ino, *truncated);
      return *truncated;
    }
  }
  const uint64_t commits = chunks_->Commits();
  NX_ASSIGN_OR_RETURN(Attr attr, meta_->SetAttr(ctx, ino, rest));
  MergePending(ino, &attr, commits);
  return attr;
}

Result<Entry> Vfs::Mknod(const Context& ctx, Ino parent, std::string_view name, mode_t mode,
                         dev_t rdev) {
  Count(Op::kMknod);
  NX_TRY(CheckWritable());
  NX_TRY(CheckNotInternal(parent, name));
  meta::FileType type = (mode & S_IFMT) ? meta::FileTypeFromMode(mode) : meta::FileType::kFile;
  if (type == meta::FileType::kDir) return Err(EINVAL, "mknod cannot create a directory");
  return meta_->Mknod(ctx, parent, name, type, mode & 07777, static_cast<uint32_t>(rdev));
}

Result<Entry> Vfs::Mkdir(const Context& ctx, Ino parent, std::string_view name, mode_t mode) {
  Count(Op::kMkdir);
  NX_TRY(CheckWritable());
  NX_TRY(CheckNotInternal(parent, name));
  return meta_->Mkdir(ctx, parent, name, mode & 07777);
}

Status Vfs::Unlink(const Context& ctx, Ino parent, std::string_view name) {
  Count(Op::kUnlink);
  NX_TRY(CheckWritable());
  NX_TRY(CheckNotInternal(parent, name));
  return meta_->Unlink(ctx, parent, name);
}

Status Vfs::Rmdir(const Context& ctx, Ino parent, std::string_view name) {
  Count(Op::kRmdir);
  NX_TRY(CheckWritable());
  NX_TRY(CheckNotInternal(parent, name));
  return meta_->Rmdir(ctx, parent, name);
}

Result<Entry> Vfs::Symlink(const Context& ctx, Ino parent, std::string_view name,
                           std::string_view target) {
  Count(Op::kSymlink);
  NX_TRY(CheckWritable());
  NX_TRY(CheckNotInternal(parent, name));
  return meta_->Symlink(ctx, parent, name, target);
}

Result<std::string> Vfs::ReadLink(const Context& ctx, Ino ino) {
  Count(Op::kReadLink);
  if (IsInternalIno(ino)) return Err(EINVAL, "internal files are not symlinks");
  return meta_->ReadLink(ino);
}

Result<Entry> Vfs::Link(const Context& ctx, Ino ino, Ino new_parent, std::string_view new_name) {
  Count(Op::kLink);
  NX_TRY(CheckWritable());
  if (IsInternalIno(ino)) return Err(EPERM, "internal files cannot be linked");
  NX_TRY(CheckNotInternal(new_parent, new_name));
  const uint64_t commits = chunks_->Commits();
  NX_ASSIGN_OR_RETURN(Entry e, meta_->Link(ctx, ino, new_parent, new_name));
  MergePending(e.ino, &e.attr, commits);
  return e;
}

Status Vfs::Rename(const Context& ctx, Ino parent, std::string_view name, Ino new_parent,
                   std::string_view new_name, uint32_t flags) {
  Count(Op::kRename);
  NX_TRY(CheckWritable());
  NX_TRY(CheckNotInternal(parent, name));
  NX_TRY(CheckNotInternal(new_parent, new_name));
  return meta_->Rename(ctx, parent, name, new_parent, new_name, flags);
}

Result<meta::StatFs> Vfs::StatFs(Ino ino) {
  Count(Op::kStatFs);
  return meta_->GetStatFs(IsInternalIno(ino) ? meta::kRootIno : ino);
}

Status Vfs::Access(const Context& ctx, Ino ino, int mask) {
  Count(Op::kAccess);
  if (IsInternalIno(ino)) {
    const int denied = ino == kControlIno ? X_OK : (W_OK | X_OK);
    return (mask & denied) ? Status::Errno(EACCES, "internal files are read-only") : Status::OK();
  }
  if ((mask & W_OK) && options_.read_only) {
    return Status::Errno(EROFS, "the file system is mounted read-only");
  }
  return meta_->Access(ctx, ino, mask);
}

Result<std::string> Vfs::GetXattr(const Context& ctx, Ino ino, std::string_view name) {
  Count(Op::kXattr);
  if (IsInternalIno(ino)) return Err(ENODATA, "internal files have no xattrs");
  return meta_->GetXattr(ctx, ino, name);
}

Status Vfs::SetXattr(const Context& ctx, Ino ino, std::string_view name, std::string_view value,
                     int flags) {
  Count(Op::kXattr);
  NX_TRY(CheckWritable());
  if (IsInternalIno(ino)) return Status::Errno(EPERM, "internal files cannot be changed");
  return meta_->SetXattr(ctx, ino, name, value, flags);
}

Result<std::vector<std::string>> Vfs::ListXattr(const Context& ctx, Ino ino) {
  Count(Op::kXattr);
  if (IsInternalIno(ino)) return std::vector<std::string>{};
  return meta_->ListXattr(ctx, ino);
}

Status Vfs::RemoveXattr(const Context& ctx, Ino ino, std::string_view name) {
  Count(Op::kXattr);
  NX_TRY(CheckWritable());
  if (IsInternalIno(ino)) return Status::Errno(EPERM, "internal files cannot be changed");
  return meta_->RemoveXattr(ctx, ino, name);
}

}  // namespace nexus::vfs
