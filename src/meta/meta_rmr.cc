// MetaImpl::RemoveTree: a recursive delete done inside the metadata engine (`nexusfs rmr`).
//
// The tree is walked depth-first with an explicit stack of directories. Each transaction works
// on one directory D: it lists at most `batch` entries after a cursor, removes the
// non-directories among them exactly as Unlink does (RemoveEntryTxn), and hands the
// subdirectories back to be walked first. Once a listing from the start of D finds nothing but
// what the same transaction removed, D itself is removed from its parent in that transaction
// (as Rmdir). A leaf directory of fewer than `batch` entries therefore costs one transaction.
//
// Conflicts with other clients: every transaction reads D's attributes, which any create or
// remove in D rewrites, so a concurrent change makes one of the two retry. An entry added to D
// while its subdirectories are walked is found by the listing from the start that always
// precedes D's removal: the directory is re-listed until it is empty.
#include <unistd.h>

#include <unordered_set>

#include "common/clock.h"
#include "meta/meta_impl.h"

namespace nexus::meta {
namespace {

// Entries listed (and at most removed) per transaction. On etcd a transaction of this many
// removals stays well under the --max-txn-ops the docs ask for; a smaller server limit (E2BIG)
// makes RemoveTree shrink its batch.
constexpr size_t kTreeBatch = 512;

std::string EntryName(Ino parent, std::string_view name) {
  return "'" + std::string(name) + "' in directory " + std::to_string(parent);
}

// A directory to empty and then remove: entry `name` of `parent` is directory `ino`.
struct TreeFrame {
  Ino parent = 0;
  std::string name;
  Ino ino = 0;
  std::string cursor;  // entries up to this name were handled; "" = list from the start
};

// What one transaction over a frame did (reset at every run of the body).
struct TreeBatch {
  uint64_t removed = 0;            // entries removed, the directory itself included
  std::vector<TreeFrame> subdirs;  // subdirectories listed, to walk before coming back
  std::string cursor;              // where the next listing of the frame starts
  bool finished = false;           // the directory was removed, or is gone already
};

}  // namespace

Result<uint64_t> MetaImpl::RemoveTree(const Context& ctx, Ino parent, std::string_view name,
                                      const std::function<void(uint64_t)>& progress) {
  const Ino real_parent = Real(parent);
  const std::string what = "remove tree " + EntryName(real_parent, name);
  NX_TRY(ValidateName(name).With(what));

  // The top entry: ENOENT, and the checks its own removal needs, before anything is removed.
  FileType type = FileType::kFile;
  Ino top = 0;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(Attr dir, GetAttrTxn(txn, real_parent));
    NX_TRY(CheckDirWrite(ctx, dir, real_parent, what));
    NX_ASSIGN_OR_RETURN(auto v, txn.Get(keys::Dentry(real_parent, name)));
    if (!v) return Status::NotFound(what + ": does not exist");
    NX_TRY(keys::DecodeDentry(*v, &type, &top).With(what));
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, top));
    type = attr.type;
    return CheckSticky(ctx, dir, attr, what);
  }));
  if (type != FileType::kDir) {
    Status s = Unlink(ctx, parent, name);
    if (s.ok()) {
      if (progress) progress(1);
      return uint64_t{1};
    }
    if (s.code() != EISDIR) return Err(s.With("remove tree"));
    // Replaced by a directory meanwhile: remove that one.
    NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
      NX_ASSIGN_OR_RETURN(auto v, txn.Get(keys::Dentry(real_parent, name)));
      if (!v) return Status::NotFound(what + ": does not exist");
      return keys::DecodeDentry(*v, &type, &top).With(what);
    }));
  }

  std::vector<TreeFrame> stack;
  stack.push_back(TreeFrame{real_parent, std::string(name), top, {}});
  uint64_t total = 0;
  size_t batch = kTreeBatch;
  while (!stack.empty()) {
    const TreeFrame& f = stack.back();
    TreeBatch out;
    Status s = engine_->Update([&](kv::Txn& txn) -> Status {
      out = TreeBatch{};
      const std::string dwhat = "remove tree: directory " + std::to_string(f.ino);
      auto got = GetAttrTxn(txn, f.ino);
      if (!got && got.error().IsNotFound()) {  // removed by another client meanwhile
        out.finished = true;
        return Status::OK();
      }
      if (!got) return got.error();
      Attr d = *got;
      if (d.type != FileType::kDir || d.nlink == 0) {
        out.finished = true;
        return Status::OK();
      }
      NX_TRY(CheckDirWrite(ctx, d, f.ino, dwhat));
      NX_TRY(CheckPermission(ctx, d, R_OK).With("list directory " + std::to_string(f.ino)));

      const std::string prefix = keys::DentryPrefix(f.ino);
      std::string begin = prefix;
      if (!f.cursor.empty()) begin.append(f.cursor).push_back('\0');  // strictly after it
      std::vector<std::string> names;
      std::vector<Ino> inos;
      Status bad;
      NX_TRY(txn.Scan(begin, PrefixEnd(prefix), batch, [&](std::string_view k, std::string_view v) {
        FileType t;
        Ino ino = 0;
        bad = keys::DecodeDentry(v, &t, &ino);
        if (!bad.ok()) return false;
        names.emplace_back(k.substr(prefix.size()));
        inos.push_back(ino);
        return true;
      }));
      if (!bad.ok()) return bad.With(dwhat);

      std::vector<std::string> akeys;
      akeys.reserve(inos.size());
      for (Ino ino : inos) akeys.push_back(keys::Attr(ino));
      std::vector<std::optional<std::string>> attrs;
      if (!akeys.empty()) {
        NX_ASSIGN_OR_RETURN(attrs, txn.MultiGet(akeys));
      }
      const int64_t now = NowNanos();
      // Inodes changed by this transaction (a second hard link in the same batch): their
      // prefetched attributes are stale, so they are read again.
      std::unordered_set<Ino> touched;
      CounterDeltas deltas;  // written once at the end
      bool changed = false;
      for (size_t i = 0; i < names.size(); ++i) {
        const std::string ewhat = "remove tree: " + EntryName(f.ino, names[i]);
        Attr a;
        if (touched.count(inos[i])) {
          NX_ASSIGN_OR_RETURN(a, GetAttrTxn(txn, inos[i]));
        } else if (!attrs[i]) {
          return Status::NotFound(ewhat + ": points to missing inode " + std::to_string(inos[i]));
        } else {
          NX_TRY(keys::DecodeAttr(*attrs[i], &a).With(ewhat));
        }
        if (a.type == FileType::kDir && a.nlink == 0) {  // rmdir drops both at once
          return Status::Errno(
              EIO, ewhat + ": names removed directory " + std::to_string(inos[i]) + " (run fsck)");
        }
        if (a.type == FileType::kDir) {
          NX_TRY(CheckSticky(ctx, d, a, ewhat));  // fail before emptying it, not after
          out.subdirs.push_back(TreeFrame{f.ino, names[i], inos[i], {}});
          continue;
        }
        NX_TRY(RemoveEntryTxn(txn, ctx, f.ino, d, names[i], inos[i], a, now, ewhat, &deltas));
        touched.insert(inos[i]);
        changed = true;
        ++out.removed;
      }
      if (names.size() == batch) {  // more to list after the last name
        out.cursor = names.back();
      } else if (!out.subdirs.empty() || !f.cursor.empty()) {
        // The end of D: once the subdirectories are gone, list it again from the start (entries
        // before the cursor may have been added meanwhile).
        out.cursor.clear();
      } else {
        // Listed from the start to the end, and every entry removed here: D is empty.
        const std::string fwhat = "remove tree: " + EntryName(f.parent, f.name);
        NX_ASSIGN_OR_RETURN(Attr p, GetAttrTxn(txn, f.parent));
        NX_TRY(CheckDirWrite(ctx, p, f.parent, fwhat));
        NX_ASSIGN_OR_RETURN(auto v, txn.Get(keys::Dentry(f.parent, f.name)));
        FileType t;
        Ino ino = 0;
        if (v) NX_TRY(keys::DecodeDentry(*v, &t, &ino).With(dwhat));
        out.finished = true;
        if (ino == f.ino) {  // else it was renamed or removed meanwhile: nothing left to do
          NX_TRY(RemoveEntryTxn(txn, ctx, f.parent, p, f.name, f.ino, d, now, fwhat, &deltas));
          NX_TRY(PutAttrTxn(txn, f.parent, p));
          ++out.removed;
          return deltas.FlushTxn(txn);  // D's attributes are gone (or kept, nlink 0, while open)
        }
      }
      NX_TRY(deltas.FlushTxn(txn));
      return changed ? PutAttrTxn(txn, f.ino, d) : Status::OK();
    });
    if (!s.ok()) {
      if (s.code() == E2BIG && batch > 1) {  // the engine's transaction limit: smaller batches
        batch = std::max<size_t>(batch / 4, 1);
        continue;
      }
      return Err(s.With(what + " (after removing " + std::to_string(total) + " entries)"));
    }
    total += out.removed;
    if (progress && out.removed) progress(total);
    if (out.finished) {
      stack.pop_back();
      continue;
    }
    stack.back().cursor = std::move(out.cursor);
    // Walked in name order: the first subdirectory ends on top of the stack.
    for (auto it = out.subdirs.rbegin(); it != out.subdirs.rend(); ++it) {
      stack.push_back(std::move(*it));
    }
  }
  return total;
}

}  // namespace nexus::meta
