// Vfs: directory handles with bounded-memory streaming listings.
//
// Offsets handed to the kernel are entry indexes: 0 is ".", 1 is "..", 2 + k is entry k of the
// name-ordered listing. A handle keeps one batch (options.readdir_batch entries) and continues
// after the last name of it; a seek before the batch restarts the scan and skips forward batch
// by batch, so memory stays bounded whatever the directory's size.
#include "chunk/chunk_store.h"
#include "meta/meta.h"
#include "vfs/vfs.h"
#include "vfs/vfs_handles.h"

namespace nexus::vfs {

std::shared_ptr<Vfs::DirHandle> Vfs::FindDir(uint64_t fh) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  auto it = dirs_.find(fh);
  return it == dirs_.end() ? nullptr : it->second;
}

Result<uint64_t> Vfs::OpenDir(const Context& ctx, Ino ino, int flags) {
  Count(Op::kOpenDir);
  if (IsInternalIno(ino)) return Err(ENOTDIR, "internal files are not directories");
  NX_ASSIGN_OR_RETURN(Attr attr, meta_->GetAttr(ino));
  if (attr.type != meta::FileType::kDir) {
    return Err(ENOTDIR, "inode " + std::to_string(ino) + " is not a directory");
  }
  auto d = std::make_shared<DirHandle>();
  d->ino = ino;
  d->parent = attr.parent != 0 ? attr.parent : ino;
  std::lock_guard<std::mutex> lock(handles_mu_);
  uint64_t fh = next_fh_++;
  dirs_.emplace(fh, std::move(d));
  return fh;
}

// Replaces the batch by the next one (or the first, after a reset to batch_start 0 and an
// empty batch). Requires d.mu held.
Status Vfs::FillDirBatch(const Context& ctx, DirHandle& d, bool plus) {
  std::string after = d.batch.empty() ? std::string() : d.batch.back().name;
  d.batch_start += d.batch.size();
  d.batch.clear();
  d.batch_commits = chunks_->Commits();
  NX_TRY(meta_->ReadDir(ctx, d.ino, after, options_.readdir_batch, plus, &d.batch));
  d.eof = d.batch.size() < options_.readdir_batch;
  d.batch_plus = plus;
  d.started = true;
  return Status::OK();
}

Status Vfs::ReadDir(const Context& ctx, Ino ino, uint64_t fh, uint64_t offset, bool plus,
                    const DirFiller& fill) {
  Count(Op::kReadDir);
  auto d = FindDir(fh);
  if (!d) return Status::Errno(EBADF, "readdir: no open directory " + std::to_string(fh));
  std::lock_guard<std::mutex> lock(d->mu);
  uint64_t i = offset;
  if (i < 2) {
    NX_ASSIGN_OR_RETURN(Attr self, meta_->GetAttr(d->ino));
    if (i == 0) UpdateAtime(d->ino, self);
    meta::DirEntry dot{".", d->ino, meta::FileType::kDir, self};
    if (i == 0 && !fill(dot, 1)) return Status::OK();
    meta::DirEntry dotdot{"..", d->parent, meta::FileType::kDir, {}};
    if (plus) {
      auto pattr = meta_->GetAttr(d->parent);
      dotdot.attr = pattr ? *pattr : self;
    }
    if (!fill(dotdot, 2)) return Status::OK();
    i = 2;
  }
  uint64_t j = i - 2;
  if (!d->started || j < d->batch_start) {
    d->batch.clear();
    d->batch_start = 0;
    d->eof = false;
    NX_TRY(FillDirBatch(ctx, *d, plus));
  }
  for (;;) {
    while (j >= d->batch_start + d->batch.size()) {
      if (d->eof) return Status::OK();
      NX_TRY(FillDirBatch(ctx, *d, plus));
    }
    meta::DirEntry e = d->batch[j - d->batch_start];
    uint64_t commits = d->batch_commits;
    if (plus && !d->batch_plus) {
      commits = chunks_->Commits();
      auto attr = meta_->GetAttr(e.ino);
      if (attr) {
        e.attr = *attr;
      } else {
        e.attr.type = e.type;  // removed meanwhile: report what the listing saw
      }
    }
    if (plus) MergePending(e.ino, &e.attr, commits);
    if (!fill(e, j + 3)) return Status::OK();
    ++j;
  }
}

Status Vfs::ReleaseDir(Ino ino, uint64_t fh) {
  Count(Op::kReleaseDir);
  std::lock_guard<std::mutex> lock(handles_mu_);
  if (dirs_.erase(fh) == 0) {
    return Status::Errno(EBADF, "releasedir: no open directory " + std::to_string(fh));
  }
  return Status::OK();
}

Status Vfs::FsyncDir(Ino ino, bool datasync) {
  Count(Op::kFsync);
  return meta_->Sync();
}

}  // namespace nexus::vfs
