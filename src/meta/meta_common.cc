// Helpers shared by every part of MetaImpl: attribute records, permission checks, name rules,
// inode allocation and the removal of an inode whose last link went away.
#include <unistd.h>

#include <cstdio>

#include "common/logging.h"
#include "meta/meta_impl.h"

namespace nexus::meta {
namespace {

std::string InoName(Ino ino) { return "inode " + std::to_string(ino); }

std::string MaskText(int mask) {
  std::string s = "---";
  if (mask & R_OK) s[0] = 'r';
  if (mask & W_OK) s[1] = 'w';
  if (mask & X_OK) s[2] = 'x';
  return s;
}

std::string OctalMode(uint32_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04o", mode & 07777);
  return buf;
}

}  // namespace

MetaImpl::MetaImpl(std::unique_ptr<kv::Engine> engine, MetaOptions options)
    : engine_(std::move(engine)), options_(options) {
  hint_misses_ = engine_->DefersExpectedReads();
  local_opens_ = options_.sole_client && engine_->SingleProcess();
  one_writer_ = engine_->OneWriterAtATime();
}

MetaImpl::~MetaImpl() { StopCloser(); }

Status MetaImpl::DecodeAttrTxnValue(const std::optional<std::string>& v, Ino ino, Attr* attr) {
  if (!v) return Status::NotFound(InoName(ino) + " does not exist");
  return keys::DecodeAttr(*v, attr).With(InoName(ino));
}

Result<Attr> MetaImpl::GetAttrTxn(kv::Txn& txn, Ino ino) {
  NX_ASSIGN_OR_RETURN(auto v, txn.Get(keys::Attr(ino)));
  Attr attr;
  NX_TRY(DecodeAttrTxnValue(v, ino, &attr));
  return attr;
}

Result<std::vector<Attr>> MetaImpl::GetAttrsTxn(kv::Txn& txn, const std::vector<Ino>& inos) {
  std::vector<std::string> akeys;
  akeys.reserve(inos.size());
  for (Ino ino : inos) akeys.push_back(keys::Attr(ino));
  NX_ASSIGN_OR_RETURN(auto values, txn.MultiGet(akeys));
  std::vector<Attr> attrs(inos.size());
  for (size_t i = 0; i < inos.size(); ++i)
    NX_TRY(DecodeAttrTxnValue(values[i], inos[i], &attrs[i]));
  return attrs;
}

Result<MetaImpl::DirAndEntry> MetaImpl::GetDirAndEntryTxn(kv::Txn& txn, Ino parent,
                                                          const std::string& dkey,
                                                          const std::string* expected_dir) {
  std::vector<std::optional<std::string>> values;
  if (expected_dir) {
    NX_ASSIGN_OR_RETURN(
        values, txn.MultiGetExpecting({keys::Attr(parent), dkey}, {*expected_dir, std::nullopt}));
  } else {
    NX_ASSIGN_OR_RETURN(values, txn.MultiGet({keys::Attr(parent), dkey}));
  }
  DirAndEntry out;
  NX_TRY(DecodeAttrTxnValue(values[0], parent, &out.dir));
  out.dir_value = std::move(*values[0]);
  out.entry = std::move(values[1]);
  return out;
}

void MetaImpl::RememberMiss(const std::string& dkey, const std::string& dir_value) {
  std::lock_guard<std::mutex> lock(miss_mu_);
  if (miss_hints_.size() >= kMissHints) miss_hints_.clear();  // stale ones, mostly
  miss_hints_[dkey] = MissHint{dir_value, std::chrono::steady_clock::now()};
}

std::optional<std::string> MetaImpl::TakeMissHint(const std::string& dkey) {
  std::lock_guard<std::mutex> lock(miss_mu_);
  auto it = miss_hints_.find(dkey);
  if (it == miss_hints_.end()) return std::nullopt;
  std::optional<std::string> out;
  if (std::chrono::steady_clock::now() - it->second.at < kMissHintTtl) {
    out = std::move(it->second.dir_value);
  }
  miss_hints_.erase(it);
  return out;
}

Status MetaImpl::PutAttrTxn(kv::Txn& txn, Ino ino, const Attr& attr) {
  return txn.Put(keys::Attr(ino), keys::EncodeAttr(attr));
}

// Root passes the read and write bits; it needs some x bit for X_OK on anything but a
// directory, as the kernel's generic_permission() does.
Status MetaImpl::CheckPermission(const Context& ctx, const Attr& attr, int mask) {
  mask &= R_OK | W_OK | X_OK;
  if (!ctx.check_permission || mask == 0) return Status::OK();
  if (ctx.uid == 0) {
    if ((mask & X_OK) && attr.type != FileType::kDir && (attr.mode & 0111) == 0) {
      return Status::Errno(EACCES,
                           "permission denied: no execute bit in mode " + OctalMode(attr.mode));
    }
    return Status::OK();
  }
  uint32_t bits;
  if (ctx.uid == attr.uid) {
    bits = (attr.mode >> 6) & 7;
  } else if (ctx.InGroup(attr.gid)) {
    bits = (attr.mode >> 3) & 7;
  } else {
    bits = attr.mode & 7;
  }
  if ((static_cast<uint32_t>(mask) & ~bits) == 0) return Status::OK();
  return Status::Errno(EACCES, "permission denied: uid " + std::to_string(ctx.uid) + " needs " +
                                   MaskText(mask) + " on mode " + OctalMode(attr.mode) +
                                   " owned by " + std::to_string(attr.uid) + ":" +
                                   std::to_string(attr.gid));
}

Status MetaImpl::ValidateName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("empty file name");
  if (name.size() > kMaxNameLen) {
    return Status::Errno(ENAMETOOLONG, "name '" + std::string(name.substr(0, 32)) + "...' has " +
                                           std::to_string(name.size()) + " bytes, more than " +
                                           std::to_string(kMaxNameLen));
  }
  if (name == "." || name == "..") {
    return Status::InvalidArgument("'" + std::string(name) + "' is not a valid name here");
  }
  if (name.find('/') != std::string_view::npos) {
    return Status::InvalidArgument("name '" + std::string(name) + "' contains '/'");
  }
  if (name.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("name contains a NUL byte");
  }
  return Status::OK();
}

// Inode numbers come from the nextInode counter in batches of options_.ino_batch, taken in a
// small transaction of their own; numbers of a batch this client does not use are lost, never
// reused. Format sets the counter past the root.
Result<Ino> MetaImpl::AllocIno() {
  std::lock_guard<std::mutex> lock(alloc_mu_);
  if (next_ino_ >= end_ino_) {
    const uint32_t batch = std::max<uint32_t>(options_.ino_batch, 1);
    uint64_t end = 0;
    NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
      NX_ASSIGN_OR_RETURN(int64_t v, txn.Increment(keys::Counter("nextInode"), batch));
      end = static_cast<uint64_t>(v);
      return Status::OK();
    }));
    if (end < batch || end >= kMaxMetaIno) {
      return Err(Status::Errno(ENOSPC,
                               "inode numbers exhausted (counter at " + std::to_string(end) + ")"));
    }
    next_ino_ = std::max<Ino>(end - batch, kRootIno + 1);
    end_ino_ = end;
    if (next_ino_ >= end_ino_) return Err(Status::IOError("inode counter is damaged"));
  }
  return next_ino_++;
}

// The inode keeps its attribute record (nlink 0) while any session has it open; the last
// Close, or the cleanup of the session holding it, removes it later.
Status MetaImpl::RemoveInodeTxn(kv::Txn& txn, Ino ino, const Attr& attr, CounterDeltas* deltas) {
  bool open = false;
  if (local_opens_) {
    // No other client exists: this one's handles are the only ones. An inode open here gets the
    // records that a crash would leave for the session cleanup.
    {
      std::lock_guard<std::mutex> lock(open_mu_);
      open = open_counts_.count(ino) || pending_close_.count(ino) || closing_.count(ino);
      if (open) sustained_.insert(ino);
    }
    if (open) {
      NX_TRY(txn.Put(keys::Open(ino, sid_), ""));
      NX_TRY(txn.Put(keys::Sustained(sid_, ino), ""));
    }
  } else {
    NX_TRY(txn.ScanPrefix(keys::OpenPrefix(ino), 1, [&](std::string_view, std::string_view) {
      open = true;
      return false;
    }));
  }
  if (open) {
    Attr kept = attr;
    kept.nlink = 0;
    return PutAttrTxn(txn, ino, kept);
  }
  return PurgeInodeTxn(txn, ino, attr, deltas);
}

// Deletes the attribute, symlink target, xattrs, parent counts and locks of `ino`; a regular
// file with data gets a D record so that CleanupDeleted releases its chunks.
Status MetaImpl::PurgeInodeTxn(kv::Txn& txn, Ino ino, const Attr& attr, CounterDeltas* deltas) {
  NX_TRY(txn.Delete(keys::Attr(ino)));
  if (attr.type == FileType::kSymlink) NX_TRY(txn.Delete(keys::Symlink(ino)));
  std::vector<std::string> extra;
  std::vector<std::string> prefixes;
  if (MayHaveXattrs(attr)) prefixes.push_back(keys::XattrPrefix(ino));
  // Parent records exist only while a non-directory has several links (Attr.parent is 0 then).
  if (attr.parent == 0) prefixes.push_back(keys::ParentPrefix(ino));
  for (const std::string& prefix : prefixes) {
    NX_TRY(txn.ScanPrefix(prefix, 0, [&](std::string_view k, std::string_view) {
      extra.emplace_back(k);
      return true;
    }));
  }
  for (const std::string& k : extra) NX_TRY(txn.Delete(k));
  if (MayHaveLocks(attr)) {
    NX_TRY(txn.Delete(keys::Flock(ino)));
    NX_TRY(txn.Delete(keys::Plock(ino)));
  }
  if (attr.type == FileType::kFile && attr.length > 0) {
    NX_TRY(txn.Put(keys::DelFile(ino, attr.length), ""));
    if (deltas) {
      deltas->used_space -= static_cast<int64_t>(attr.length);
    } else {
      NX_TRY(txn.Add(keys::Counter("usedSpace"), -static_cast<int64_t>(attr.length)));
    }
  }
  if (deltas) {
    --deltas->inodes;
    return Status::OK();
  }
  return txn.Add(keys::Counter("totalInodes"), -1);
}

Status MetaImpl::CounterDeltas::FlushTxn(kv::Txn& txn) {
  if (inodes) NX_TRY(txn.Add(keys::Counter("totalInodes"), inodes));
  if (used_space) NX_TRY(txn.Add(keys::Counter("usedSpace"), used_space));
  inodes = used_space = 0;
  return Status::OK();
}

}  // namespace nexus::meta
