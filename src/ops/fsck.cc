// nexusfs fsck: checks the key schema of src/meta/keys.h in one engine snapshot per round.
//
// Memory is bounded by windows, not by the volume: every key of an inode (A<ino>...) is
// contiguous, so one ordered scan of the A range sees each inode's chunks, entries, attributes
// and parent records together and checks them locally. What needs a join — how many entries
// name an inode (they sit under their parent's key), how many chunk records name a slice — is
// counted into fixed arrays for one window of inode numbers and one window of slice ids per
// pass; a volume with more inode numbers or slice ids than a window takes several passes over
// the A range. Block objects of the live slices of a window are checked (Head) at the end of its
// pass.
#include "ops/fsck.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "chunk/chunk_impl.h"
#include "common/logging.h"
#include "meta/keys.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::ops {
namespace {

using meta::Attr;
using meta::FileType;
using meta::Ino;
using meta::kChunkSize;
using meta::kRootIno;
using meta::Slice;
namespace keys = meta::keys;

constexpr const char* kLostFound = "lost+found";

std::string InoName(Ino ino) { return "inode " + std::to_string(ino); }
std::string SliceName(uint64_t id, uint32_t size) {
  return "slice " + std::to_string(id) + "_" + std::to_string(size);
}
std::string EntryName(Ino parent, std::string_view name) {
  return "entry '" + std::string(name) + "' in directory " + std::to_string(parent);
}
const char* TypeName(FileType t) {
  switch (t) {
    case FileType::kFile:
      return "file";
    case FileType::kDir:
      return "directory";
    case FileType::kSymlink:
      return "symlink";
    case FileType::kFifo:
      return "fifo";
    case FileType::kBlockDev:
      return "block device";
    case FileType::kCharDev:
      return "char device";
    case FileType::kSocket:
      return "socket";
  }
  return "?";
}

bool ValidName(std::string_view name) {
  return !name.empty() && name.size() <= meta::kMaxNameLen && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

std::string Key8(char tag, uint64_t v) {
  std::string k(1, tag);
  PutBE64(&k, v);
  return k;
}

// Per inode number of the current window: what the entries naming it say, and what its own
// records say.
struct InoSlot {
  uint32_t links = 0;                // entries naming it
  uint32_t nlink = 0;                // Attr.nlink
  uint32_t subdirs = 0;              // entries of type directory inside it
  uint32_t rec_total = 0;            // sum of its A<ino>P counts
  uint64_t psum = 0, psq = 0;        // sum of the parents (and squares) of the entries
  uint64_t rec_sum = 0, rec_sq = 0;  // the same from its parent records
  Ino attr_parent = 0;
  uint8_t has_attr = 0;
  uint8_t type = 0;
};

struct SliceSlot {
  uint32_t refs = 0;
  uint32_t size = 0;
};

// The inode whose keys the scan is reading.
struct Cur {
  Ino ino = 0;
  bool active = false;
  bool has_attr = false, bad_attr = false;
  Attr attr;
  uint32_t entries = 0, subdirs = 0;
  bool has_chunks = false, has_other = false;
  uint64_t chunk_end = 0;
  uint32_t rec_total = 0;
  uint64_t rec_sum = 0, rec_sq = 0;
};

struct PendingEntry {
  Ino parent;
  std::string name;
  FileType type;
  Ino child;
};

struct BlockRef {
  uint64_t id;
  uint32_t size;
  uint32_t block;
};

class Checker {
 public:
  Checker(meta::Meta* m, object::ObjectStore* store, const FsckOptions& o, bool report)
      : meta_(m), store_(store), opts_(o), report_(report) {
    bs_ = m->format().block_size;
  }

  // One round: every check inside one snapshot.
  Status Run() {
    return meta_->engine()->View([&](kv::Txn& txn) -> Status {
      Reset();
      NX_TRY(ReadCounters(txn));
      for (uint64_t pass = 0;; ++pass) {
        NX_TRY(Pass(txn, pass));
        stats.passes = pass + 1;
        if (pass == 0) NX_TRY(CheckCountersAndPending(txn));
        const uint64_t ino_passes = max_ino_ / opts_.ino_window + 1;
        const uint64_t slice_passes = max_slice_ / opts_.slice_window + 1;
        if (pass + 1 >= std::max(ino_passes, slice_passes)) break;
      }
      if (!missing_.empty()) NX_TRY(ReportDamagedFiles(txn));
      return Status::OK();
    });
  }

  FsckStats stats;
  std::vector<Problem> problems;

 private:
  void Reset() {
    stats = {};
    problems.clear();
    missing_.clear();
    pending_entries_.clear();
    max_ino_ = 0;
    max_slice_ = 0;
    max_slice_seen_over_ = 0;
    max_attr_ino_ = 0;
    used_ = 0;
    counted_inodes_ = 0;
    root_seen_ = false;
  }

  void Add(Problem p) {
    if (report_ && opts_.on_problem) opts_.on_problem(p);
    problems.push_back(std::move(p));
  }
  void Add(std::string kind, std::string object, std::string message, bool repairable,
           const std::function<void(Problem&)>& fill = {}) {
    Problem p;
    p.kind = std::move(kind);
    p.object = std::move(object);
    p.message = std::move(message);
    p.repairable = repairable;
    if (fill) fill(p);
    Add(std::move(p));
  }

  Status ReadCounters(kv::Txn& txn) {
    NX_ASSIGN_OR_RETURN(auto v,
                        txn.MultiGet({keys::Counter("usedSpace"), keys::Counter("totalInodes"),
                                      keys::Counter("nextInode"), keys::Counter("nextSlice")}));
    for (int i = 0; i < 4; ++i) counters_[i] = v[i] ? keys::DecodeU64(*v[i]) : 0;
    // Windows are sized from the counters; damaged counters are caught below and passes follow
    // the largest number actually met.
    max_ino_ = counters_[2];
    max_slice_ = counters_[3];
    return Status::OK();
  }

  // ---- one pass over the A range ----
  Status Pass(kv::Txn& txn, uint64_t pass) {
    first_ = pass == 0;
    ilo_ = pass * opts_.ino_window;
    slo_ = pass * opts_.slice_window;
    islots_.assign(std::min<uint64_t>(opts_.ino_window, max_ino_ >= ilo_ ? max_ino_ - ilo_ + 1 : 0),
                   InoSlot{});
    sslots_.assign(
        std::min<uint64_t>(opts_.slice_window, max_slice_ >= slo_ ? max_slice_ - slo_ + 1 : 0),
        SliceSlot{});
    cur_ = Cur{};
    std::string begin = "A";
    const std::string end = PrefixEnd("A");
    std::vector<std::pair<std::string, std::string>> batch;
    for (;;) {
      batch.clear();
      NX_TRY(txn.Scan(begin, end, opts_.scan_batch, [&](std::string_view k, std::string_view v) {
        batch.emplace_back(std::string(k), std::string(v));
        return true;
      }));
      for (const auto& [k, v] : batch) NX_TRY(Visit(txn, k, v));
      if (batch.size() < opts_.scan_batch) break;
      begin = batch.back().first + '\0';
    }
    NX_TRY(FinishInode(txn));
    if (first_) NX_TRY(CheckEntries(txn));
    NX_TRY(CheckInoWindow(txn));
    const bool last =
        pass + 1 >= std::max(max_ino_ / opts_.ino_window + 1, max_slice_ / opts_.slice_window + 1);
    return CheckSliceWindow(txn, last);
  }

  InoSlot* IslotFor(Ino ino) {
    if (ino < ilo_ || ino - ilo_ >= opts_.ino_window) return nullptr;
    const uint64_t i = ino - ilo_;
    if (i >= islots_.size()) islots_.resize(i + 1);
    return &islots_[i];
  }
  SliceSlot* SslotFor(uint64_t id) {
    if (id < slo_ || id - slo_ >= opts_.slice_window) return nullptr;
    const uint64_t i = id - slo_;
    if (i >= sslots_.size()) sslots_.resize(i + 1);
    return &sslots_[i];
  }

  Status Visit(kv::Txn& txn, const std::string& k, const std::string& v) {
    if (k.size() < 10) {
      if (first_) Add("bad-key", "key " + Hex(k), "too short for an inode record", false);
      return Status::OK();
    }
    const Ino ino = GetBE64(k.data() + 1);
    if (!cur_.active || ino != cur_.ino) {
      NX_TRY(FinishInode(txn));
      cur_ = Cur{};
      cur_.ino = ino;
      cur_.active = true;
      max_ino_ = std::max(max_ino_, ino);
    }
    switch (k[9]) {
      case 'I':
        if (keys::DecodeAttr(v, &cur_.attr).ok() && k.size() == 10) {
          cur_.has_attr = true;
        } else {
          cur_.bad_attr = true;
          if (first_) {
            Add("bad-attr", InoName(ino),
                "attribute record is damaged (" + std::to_string(v.size()) + " bytes)", false);
          }
        }
        break;
      case 'D':
        VisitEntry(ino, k.substr(10), v);
        if (pending_entries_.size() >= opts_.scan_batch) NX_TRY(CheckEntries(txn));
        break;
      case 'C':
        VisitChunk(ino, k, v);
        break;
      case 'P':
        if (k.size() != 18 || v.size() != 4) {
          if (first_) {
            Add("parent-records", InoName(ino), "damaged parent record " + Hex(k), true,
                [&](Problem& p) { p.ino = ino; });
          }
          break;
        }
        {
          const uint64_t p = GetBE64(k.data() + 10), c = GetBE32(v.data());
          cur_.rec_total += static_cast<uint32_t>(c);
          cur_.rec_sum += c * p;
          cur_.rec_sq += c * p * p;
        }
        break;
      case 'S':
      case 'X':
        cur_.has_other = true;
        break;
      default:
        if (first_) Add("bad-key", "key " + Hex(k), "unknown inode record type", false);
    }
    return Status::OK();
  }

  void VisitEntry(Ino dir, const std::string& name, const std::string& v) {
    FileType type;
    Ino child = 0;
    if (!keys::DecodeDentry(v, &type, &child).ok() || !ValidName(name)) {
      if (first_) {
        Add("bad-entry", EntryName(dir, name), "damaged record or invalid name", true,
            [&](Problem& p) {
              p.parent = dir;
              p.name = name;
            });
      }
      return;
    }
    ++cur_.entries;
    if (type == FileType::kDir) ++cur_.subdirs;
    if (first_) {
      ++stats.entries;
      pending_entries_.push_back({dir, name, type, child});
    }
    if (InoSlot* s = IslotFor(child)) {
      ++s->links;
      s->psum += dir;
      s->psq += dir * dir;
    }
  }

  void VisitChunk(Ino ino, const std::string& k, const std::string& v) {
    cur_.has_chunks = true;
    if (k.size() != 14) {
      if (first_) Add("bad-chunk", InoName(ino), "chunk key " + Hex(k) + " is damaged", false);
      return;
    }
    const uint32_t index = GetBE32(k.data() + 10);
    std::vector<Slice> recs;
    const std::string what = "chunk " + std::to_string(index) + " of " + InoName(ino);
    if (!keys::DecodeSlices(v, &recs).ok()) {
      if (first_) Add("bad-chunk", what, "record of " + std::to_string(v.size()) + " bytes", false);
      return;
    }
    if (first_) {
      ++stats.chunks;
      stats.slice_records += recs.size();
    }
    for (const Slice& s : recs) {
      const bool bad = s.len == 0 || uint64_t(s.pos) + s.len > kChunkSize ||
                       (s.id != 0 && uint64_t(s.off) + s.len > s.size);
      if (bad) {
        if (first_) {
          Add("bad-slice-record", what,
              "record [" + std::to_string(s.pos) + ", +" + std::to_string(s.len) + ") of " +
                  SliceName(s.id, s.size) + " at offset " + std::to_string(s.off) + " does not fit",
              false);
        }
        continue;
      }
      if (s.id == 0) continue;
      cur_.chunk_end = std::max(cur_.chunk_end, uint64_t(index) * kChunkSize + s.pos + s.len);
      max_slice_ = std::max(max_slice_, s.id);
      if (first_ && s.id >= counters_[3])
        max_slice_seen_over_ = std::max(max_slice_seen_over_, s.id);
      if (SliceSlot* slot = SslotFor(s.id)) {
        ++slot->refs;
        if (slot->size == 0) {
          slot->size = s.size;
        } else if (slot->size != s.size) {
          Add("slice-size", SliceName(s.id, s.size),
              "also referenced with size " + std::to_string(slot->size), false);
        }
      }
    }
  }

  Status FinishInode(kv::Txn& txn) {
    if (!cur_.active) return Status::OK();
    const Ino ino = cur_.ino;
    const Attr& a = cur_.attr;
    if (first_) {
      if (!cur_.has_attr && !cur_.bad_attr) {
        if (cur_.entries > 0) {
          Add("entries-without-dir", InoName(ino),
              std::to_string(cur_.entries) + " entries but no attributes", true,
              [&](Problem& p) { p.ino = ino; });
        }
        if (cur_.has_chunks) {
          bool pending = false;
          NX_TRY(txn.ScanPrefix(Key8('D', ino), 1, [&](std::string_view, std::string_view) {
            pending = true;
            return false;
          }));
          if (!pending) {
            Add("orphan-chunks", InoName(ino),
                "chunk records but no attributes and no pending-deletion record", true,
                [&](Problem& p) {
                  p.ino = ino;
                  p.expected = static_cast<int64_t>(cur_.chunk_end);
                });
          }
        }
        if (cur_.rec_total > 0 || cur_.has_other) {
          Add("stray-records", InoName(ino), "parent, symlink or xattr records but no attributes",
              true, [&](Problem& p) { p.ino = ino; });
        }
      }
      if (cur_.has_attr) {
        ++stats.inodes;
        max_attr_ino_ = std::max(max_attr_ino_, ino);
        if (ino == kRootIno)
          root_seen_ = true;
        else
          ++counted_inodes_;
        if (a.type == FileType::kFile) used_ += a.length;
        if (a.type == FileType::kDir && a.nlink != 0 && a.nlink != 2 + cur_.subdirs) {
          Add("nlink", InoName(ino),
              "directory nlink is " + std::to_string(a.nlink) + ", expected " +
                  std::to_string(2 + cur_.subdirs) + " (2 + subdirectories)",
              true, [&](Problem& p) {
                p.ino = ino;
                p.expected = 2 + cur_.subdirs;
                p.actual = a.nlink;
              });
        }
        if (a.type != FileType::kDir && cur_.entries > 0) {
          Add("entries-in-non-dir", InoName(ino),
              std::to_string(cur_.entries) + " entries inside a " + TypeName(a.type), false);
        }
        if (cur_.has_chunks && a.type != FileType::kFile) {
          Add("data-on-non-file", InoName(ino),
              std::string("chunk records on a ") + TypeName(a.type), false);
        }
      }
    }
    if (cur_.has_attr) {
      if (InoSlot* s = IslotFor(ino)) {
        s->has_attr = 1;
        s->type = static_cast<uint8_t>(a.type);
        s->nlink = a.nlink;
        s->attr_parent = a.parent;
        s->subdirs = cur_.subdirs;
        s->rec_total = cur_.rec_total;
        s->rec_sum = cur_.rec_sum;
        s->rec_sq = cur_.rec_sq;
      }
    }
    cur_.active = false;
    return Status::OK();
  }

  // Every entry points at a live inode of its type (point reads, a batch at a time).
  Status CheckEntries(kv::Txn& txn) {
    if (pending_entries_.empty()) return Status::OK();
    std::vector<std::string> ks;
    ks.reserve(pending_entries_.size());
    for (const auto& e : pending_entries_) ks.push_back(keys::Attr(e.child));
    NX_ASSIGN_OR_RETURN(auto vals, txn.MultiGet(ks));
    for (size_t i = 0; i < pending_entries_.size(); ++i) {
      const PendingEntry& e = pending_entries_[i];
      if (!vals[i]) {
        Add("dangling-entry", EntryName(e.parent, e.name),
            "names " + InoName(e.child) + ", which does not exist", true, [&](Problem& p) {
              p.parent = e.parent;
              p.name = e.name;
              p.ino = e.child;
            });
        continue;
      }
      Attr a;
      if (!keys::DecodeAttr(*vals[i], &a).ok()) continue;  // reported as bad-attr
      if (a.type != e.type) {
        Add("entry-type", EntryName(e.parent, e.name),
            std::string("says ") + TypeName(e.type) + " but " + InoName(e.child) + " is a " +
                TypeName(a.type),
            true, [&](Problem& p) {
              p.parent = e.parent;
              p.name = e.name;
              p.ino = e.child;
              p.type = static_cast<uint8_t>(a.type);
            });
      }
    }
    pending_entries_.clear();
    return Status::OK();
  }

  Result<bool> IsOpen(kv::Txn& txn, Ino ino) {
    bool open = false;
    NX_TRY(txn.ScanPrefix(keys::OpenPrefix(ino), 1, [&](std::string_view, std::string_view) {
      open = true;
      return false;
    }));
    return open;
  }

  Status CheckInoWindow(kv::Txn& txn) {
    for (size_t i = 0; i < islots_.size(); ++i) {
      const InoSlot& s = islots_[i];
      if (!s.has_attr) continue;
      const Ino ino = ilo_ + i;
      const auto type = static_cast<FileType>(s.type);
      if (ino == kRootIno) {
        if (s.links > 0) {
          Add("root-entry", InoName(ino),
              std::to_string(s.links) + " entries name the root directory", false);
        }
        if (s.attr_parent != kRootIno) {
          Add("parent", InoName(ino),
              "root's parent is " + std::to_string(s.attr_parent) + ", expected itself", true,
              [&](Problem& p) {
                p.ino = ino;
                p.expected = kRootIno;
              });
        }
        continue;
      }
      if (s.links == 0) {
        if (s.nlink == 0) {
          NX_ASSIGN_OR_RETURN(bool open, IsOpen(txn, ino));
          if (open) continue;  // unlinked and still open: released by its last close
        }
        Add("orphan", InoName(ino),
            std::string("no entry names this ") + TypeName(type) + " (nlink " +
                std::to_string(s.nlink) + ")" + (s.nlink == 0 ? ", and it is not open" : ""),
            true, [&](Problem& p) {
              p.ino = ino;
              p.actual = s.nlink;
              p.type = s.type;
            });
        continue;
      }
      if (type == FileType::kDir) {
        if (s.links > 1) {
          Add("dir-links", InoName(ino),
              "directory is named by " + std::to_string(s.links) + " entries", false);
          continue;
        }
        if (s.nlink == 0) {
          Add("nlink", InoName(ino), "directory nlink is 0 but an entry names it", true,
              [&](Problem& p) {
                p.ino = ino;
                p.expected = 2 + s.subdirs;
                p.actual = 0;
              });
        }
        if (s.attr_parent != s.psum) {
          Add("parent", InoName(ino),
              "Attr.parent is " + std::to_string(s.attr_parent) + " but directory " +
                  std::to_string(s.psum) + " names it",
              true, [&](Problem& p) {
                p.ino = ino;
                p.expected = static_cast<int64_t>(s.psum);
              });
        }
        continue;
      }
      if (s.nlink != s.links) {
        Add("nlink", InoName(ino),
            "nlink is " + std::to_string(s.nlink) + " but " + std::to_string(s.links) +
                (s.links == 1 ? " entry names it" : " entries name it"),
            true, [&](Problem& p) {
              p.ino = ino;
              p.expected = s.links;
              p.actual = s.nlink;
            });
      }
      if (s.links == 1) {
        if (s.attr_parent != s.psum || s.rec_total != 0) {
          Add("parent", InoName(ino),
              "Attr.parent is " + std::to_string(s.attr_parent) + " (and " +
                  std::to_string(s.rec_total) + " parent records) but its one entry is in " +
                  std::to_string(s.psum),
              true, [&](Problem& p) {
                p.ino = ino;
                p.expected = static_cast<int64_t>(s.psum);
              });
        }
      } else if (s.attr_parent != 0 || s.rec_total != s.links || s.rec_sum != s.psum ||
                 s.rec_sq != s.psq) {
        Add("parent-records", InoName(ino),
            "parent records (" + std::to_string(s.rec_total) + " links, Attr.parent " +
                std::to_string(s.attr_parent) + ") disagree with the " + std::to_string(s.links) +
                " entries naming it",
            true, [&](Problem& p) { p.ino = ino; });
      }
    }
    return Status::OK();
  }

  Status CheckSliceWindow(kv::Txn& txn, bool last) {
    // Reference records of the window's slice ids (the last window reaches to the end).
    const std::string kbegin = slo_ == 0 ? "K" : Key8('K', slo_);
    const std::string kend = last ? PrefixEnd("K") : Key8('K', slo_ + opts_.slice_window);
    std::unordered_map<uint64_t, std::pair<uint32_t, int64_t>> krecs;  // id -> size, refs
    NX_TRY(ScanBatched(txn, kbegin, kend, [&](const std::string& k, const std::string& v) {
      if (k.size() != 13) {
        Add("bad-refcount", "key " + Hex(k), "damaged reference record key", true,
            [&](Problem& p) { p.name = k; });
        return;
      }
      const uint64_t id = GetBE64(k.data() + 1);
      const uint32_t size = GetBE32(k.data() + 9);
      const int64_t refs = v.size() == 4 ? GetBE32(v.data()) : -1;
      const SliceSlot* s = SslotFor(id);
      const uint32_t actual = s ? s->refs : 0;
      if (s && actual > 0 && s->size != size) {
        Add("refcount", SliceName(id, size),
            "reference record for a slice referenced with size " + std::to_string(s->size), true,
            [&](Problem& p) {
              p.slice = id;
              p.size = size;
              p.expected = 0;
              p.actual = refs;
              p.name = "nodelete";
            });
        return;
      }
      krecs[id] = {size, refs};
      const int64_t want = actual;
      if (refs != want || want < 2) {
        Add("refcount", SliceName(id, size),
            (refs < 0 ? std::string("damaged reference record")
                      : "reference count is " + std::to_string(refs)) +
                " but " + std::to_string(actual) + " chunk records reference it",
            true, [&](Problem& p) {
              p.slice = id;
              p.size = size;
              p.expected = want;
              p.actual = refs;
            });
      }
    }));
    for (size_t i = 0; i < sslots_.size(); ++i) {
      const SliceSlot& s = sslots_[i];
      if (s.refs < 2) continue;
      const uint64_t id = slo_ + i;
      if (krecs.count(id)) continue;
      Add("refcount", SliceName(id, s.size),
          "no reference record (count 1) but " + std::to_string(s.refs) +
              " chunk records reference it",
          true, [&](Problem& p) {
            p.slice = id;
            p.size = s.size;
            p.expected = s.refs;
            p.actual = 1;
          });
    }
    krecs.clear();
    // Pending slice deletions: never of a slice still referenced.
    const std::string lbegin = slo_ == 0 ? "L" : Key8('L', slo_);
    const std::string lend = last ? PrefixEnd("L") : Key8('L', slo_ + opts_.slice_window);
    NX_TRY(ScanBatched(txn, lbegin, lend, [&](const std::string& k, const std::string&) {
      if (k.size() != 13) {
        Add("bad-pending", "key " + Hex(k), "damaged pending slice deletion key", true,
            [&](Problem& p) { p.name = k; });
        return;
      }
      const uint64_t id = GetBE64(k.data() + 1);
      const uint32_t size = GetBE32(k.data() + 9);
      const SliceSlot* s = SslotFor(id);
      if (s && s->refs > 0) {
        Add("pending-referenced", SliceName(id, size),
            "awaits deletion but " + std::to_string(s->refs) +
                " chunk records reference it (its blocks would be deleted)",
            true, [&](Problem& p) { p.name = k; });
      }
    }));
    for (const SliceSlot& s : sslots_) {
      if (s.refs > 0) ++stats.live_slices;
    }
    if (opts_.check_blocks) NX_TRY(CheckBlocks());
    return Status::OK();
  }

  Status ScanBatched(kv::Txn& txn, const std::string& from, const std::string& end,
                     const std::function<void(const std::string&, const std::string&)>& fn) {
    std::string begin = from;
    std::vector<std::pair<std::string, std::string>> batch;
    for (;;) {
      batch.clear();
      NX_TRY(txn.Scan(begin, end, opts_.scan_batch, [&](std::string_view k, std::string_view v) {
        batch.emplace_back(std::string(k), std::string(v));
        return true;
      }));
      for (const auto& [k, v] : batch) fn(k, v);
      if (batch.size() < opts_.scan_batch) return Status::OK();
      begin = batch.back().first + '\0';
    }
  }

  // Heads every block of the window's live slices with opts_.threads threads.
  Status CheckBlocks() {
    std::vector<BlockRef> refs;
    auto flush = [&]() {
      std::atomic<size_t> next{0};
      std::mutex mu;
      auto work = [&] {
        for (size_t i = next++; i < refs.size(); i = next++) {
          const BlockRef& r = refs[i];
          const uint32_t want = std::min(bs_, r.size - r.block * bs_);
          const std::string key = chunk::BlockKey(opts_.block_prefix, r.id, r.block, want);
          auto info = store_->Head(key);
          std::string why;
          if (!info) {
            why = info.error().code() == ENOENT ? "missing" : info.error().ToString();
          } else if (info->size != want) {
            why = "has " + std::to_string(info->size) + " bytes, expected " + std::to_string(want);
          }
          if (!why.empty()) {
            std::lock_guard lock(mu);
            missing_[{r.id, r.size}].insert(r.block);
            Add("missing-block", "block " + key,
                SliceName(r.id, r.size) + " block " + std::to_string(r.block) + ": " + why +
                    " (cannot be repaired)",
                false, [&](Problem& p) {
                  p.slice = r.id;
                  p.size = r.size;
                });
          }
        }
      };
      const int n = std::max(1, std::min<int>(opts_.threads, static_cast<int>(refs.size())));
      std::vector<std::thread> ts;
      for (int t = 1; t < n; ++t) ts.emplace_back(work);
      work();
      for (auto& t : ts) t.join();
      stats.blocks_checked += refs.size();
      refs.clear();
    };
    for (size_t i = 0; i < sslots_.size(); ++i) {
      const SliceSlot& s = sslots_[i];
      if (s.refs == 0 || s.size == 0) continue;
      for (uint32_t off = 0, b = 0; off < s.size; off += bs_, ++b) {
        refs.push_back({slo_ + i, s.size, b});
        if (refs.size() >= 8192) flush();
      }
    }
    if (!refs.empty()) flush();
    return Status::OK();
  }

  // Names the files (and byte ranges) that read the slices with missing blocks.
  Status ReportDamagedFiles(kv::Txn& txn) {
    std::map<Ino, std::vector<std::pair<uint64_t, uint64_t>>> hit;
    NX_TRY(ScanBatched(txn, "A", PrefixEnd("A"), [&](const std::string& k, const std::string& v) {
      if (k.size() != 14 || k[9] != 'C') return;
      std::vector<Slice> recs;
      if (!keys::DecodeSlices(v, &recs).ok()) return;
      const Ino ino = GetBE64(k.data() + 1);
      const uint64_t base = uint64_t(GetBE32(k.data() + 10)) * kChunkSize;
      for (const Slice& s : recs) {
        if (s.id == 0) continue;
        auto it = missing_.find({s.id, s.size});
        if (it == missing_.end()) continue;
        for (uint32_t blk : it->second) {  // the part of the record the block held
          const uint64_t a = std::max<uint64_t>(s.off, uint64_t(blk) * bs_);
          const uint64_t b = std::min<uint64_t>(uint64_t(s.off) + s.len, uint64_t(blk + 1) * bs_);
          if (a >= b) continue;
          hit[ino].emplace_back(base + s.pos + (a - s.off), base + s.pos + (b - s.off));
        }
      }
    }));
    for (auto& [ino, ranges] : hit) {
      std::string text;
      for (const auto& [a, b] : ranges) {
        if (!text.empty()) text += ", ";
        text += "[" + std::to_string(a) + ", " + std::to_string(b) + ")";
      }
      Add("damaged-file", InoName(ino),
          "bytes " + text + " read missing or damaged blocks (cannot be repaired)", false);
    }
    return Status::OK();
  }

  Status CheckCountersAndPending(kv::Txn& txn) {
    if (!root_seen_) Add("no-root", InoName(kRootIno), "the root directory is missing", false);
    stats.used_space = used_;
    auto counter = [&](const char* name, uint64_t have, uint64_t want, const std::string& what) {
      if (have == want) return;
      Add("counter", std::string("counter ") + name,
          "is " + std::to_string(have) + ", " + what + " " + std::to_string(want), true,
          [&](Problem& p) {
            p.name = name;
            p.expected = static_cast<int64_t>(want);
            p.actual = static_cast<int64_t>(have);
          });
    };
    counter("usedSpace", counters_[0], used_, "the file lengths add up to");
    counter("totalInodes", counters_[1], counted_inodes_, "the inodes (root aside) number");
    if (max_attr_ino_ >= counters_[2]) {
      counter("nextInode", counters_[2], max_attr_ino_ + 1, "but inode numbers in use reach");
    }
    if (max_slice_seen_over_ >= counters_[3] && max_slice_seen_over_ > 0) {
      counter("nextSlice", counters_[3], max_slice_seen_over_ + 1, "but slice ids in use reach");
    }
    // Removed files awaiting the release of their data: never a live inode.
    std::vector<std::pair<std::string, Ino>> dels;
    NX_TRY(ScanBatched(txn, "D", PrefixEnd("D"), [&](const std::string& k, const std::string&) {
      if (k.size() != 17) {
        Add("bad-pending", "key " + Hex(k), "damaged pending file deletion key", true,
            [&](Problem& p) { p.name = k; });
        return;
      }
      dels.emplace_back(k, GetBE64(k.data() + 1));
    }));
    NX_TRY(CheckSliceBatches(txn));
    for (size_t i = 0; i < dels.size(); i += opts_.scan_batch) {
      std::vector<std::string> ks;
      for (size_t j = i; j < std::min(dels.size(), i + opts_.scan_batch); ++j) {
        ks.push_back(keys::Attr(dels[j].second));
      }
      NX_ASSIGN_OR_RETURN(auto vals, txn.MultiGet(ks));
      for (size_t j = 0; j < vals.size(); ++j) {
        if (!vals[j]) continue;
        const auto& [k, ino] = dels[i + j];
        Add("pending-live", InoName(ino),
            "awaits data release (D record) but still has attributes (its data would be "
            "deleted)",
            true, [&](Problem& p) { p.name = k; });
      }
    }
    return Status::OK();
  }

  // The batches of slice ids clients took (R records, for gc): well formed, inside the
  // counter, not overlapping. A damaged one is removed by repair (gc --full still finds the
  // leaks of its ids).
  Status CheckSliceBatches(kv::Txn& txn) {
    uint64_t prev_end = 0;
    return ScanBatched(txn, "R", PrefixEnd("R"), [&](const std::string& k, const std::string& v) {
      std::string why;
      keys::SliceRangeRecord r;
      if (k == keys::SliceRangeFloor()) {
        if (v.size() != 8) why = "damaged record of the first recorded slice id";
      } else if (!keys::DecodeSliceRange(k, v, &r)) {
        why = "damaged slice id batch record";
      } else if (r.end > counters_[3]) {
        why = "slice id batch [" + std::to_string(r.first) + ", " + std::to_string(r.end) +
              ") reaches past nextSlice " + std::to_string(counters_[3]);
      } else if (r.first < prev_end) {
        why = "slice id batch [" + std::to_string(r.first) + ", " + std::to_string(r.end) +
              ") overlaps the one before";
      } else {
        prev_end = r.end;
      }
      if (!why.empty()) {
        Add("bad-slice-batch", "key " + Hex(k), why, true, [&](Problem& p) { p.name = k; });
      }
    });
  }

  static std::string Hex(std::string_view s) {
    static const char* d = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s.substr(0, 40)) {
      if (c >= 0x21 && c < 0x7f) {
        out += static_cast<char>(c);
      } else {
        out += "\\x";
        out += d[c >> 4];
        out += d[c & 15];
      }
    }
    return out;
  }

  meta::Meta* meta_;
  object::ObjectStore* store_;
  const FsckOptions& opts_;
  bool report_;
  uint32_t bs_ = 0;
  bool first_ = true;
  uint64_t counters_[4] = {};
  uint64_t max_ino_ = 0, max_slice_ = 0, max_slice_seen_over_ = 0, max_attr_ino_ = 0;
  uint64_t used_ = 0, counted_inodes_ = 0;
  bool root_seen_ = false;
  uint64_t ilo_ = 0, slo_ = 0;
  std::vector<InoSlot> islots_;
  std::vector<SliceSlot> sslots_;
  Cur cur_;
  std::vector<PendingEntry> pending_entries_;
  std::map<std::pair<uint64_t, uint32_t>, std::set<uint32_t>> missing_;  // bad blocks
};

// ---- repairs ----

class Repairer {
 public:
  Repairer(meta::Meta* m, const FsckOptions& o) : meta_(m), opts_(o) {}

  // Applies what it can; returns the lines describing each repair.
  Status Repair(const std::vector<Problem>& problems, std::vector<std::string>* done) {
    std::set<Ino> rebuild;
    for (const Problem& p : problems) {
      if (!p.repairable) continue;
      std::string line;
      Status s = One(p, &line, &rebuild);
      if (!s.ok()) {
        line = "could not repair " + p.object + ": " + s.ToString();
      }
      if (!line.empty()) Emit(done, line);
    }
    if (!rebuild.empty()) NX_TRY(RebuildParents(rebuild, done));
    return Status::OK();
  }

 private:
  void Emit(std::vector<std::string>* done, const std::string& line) {
    if (opts_.on_repair) opts_.on_repair(line);
    done->push_back(line);
  }

  kv::Engine* E() { return meta_->engine(); }

  Status One(const Problem& p, std::string* line, std::set<Ino>* rebuild) {
    if (p.kind == "dangling-entry" || p.kind == "bad-entry") {
      NX_TRY(E()->Update([&](kv::Txn& txn) { return txn.Delete(keys::Dentry(p.parent, p.name)); }));
      *line = "removed " + p.object;
    } else if (p.kind == "entry-type") {
      NX_TRY(E()->Update([&](kv::Txn& txn) {
        return txn.Put(keys::Dentry(p.parent, p.name),
                       keys::EncodeDentry(static_cast<FileType>(p.type), p.ino));
      }));
      *line = "set the type of " + p.object + " to " + TypeName(static_cast<FileType>(p.type));
    } else if (p.kind == "nlink") {
      bool changed = false;
      NX_TRY(E()->Update([&](kv::Txn& txn) -> Status {
        changed = false;
        NX_ASSIGN_OR_RETURN(Attr a, GetAttr(txn, p.ino));
        if (a.nlink != static_cast<uint32_t>(p.actual)) return Status::OK();
        a.nlink = static_cast<uint32_t>(p.expected);
        changed = true;
        return txn.Put(keys::Attr(p.ino), keys::EncodeAttr(a));
      }));
      *line = changed ? "set nlink of " + p.object + " to " + std::to_string(p.expected)
                      : "skipped " + p.object + ": changed meanwhile";
    } else if (p.kind == "parent") {
      NX_TRY(E()->Update([&](kv::Txn& txn) -> Status {
        NX_ASSIGN_OR_RETURN(Attr a, GetAttr(txn, p.ino));
        a.parent = static_cast<Ino>(p.expected);
        NX_TRY(DeletePrefix(txn, keys::ParentPrefix(p.ino)));
        return txn.Put(keys::Attr(p.ino), keys::EncodeAttr(a));
      }));
      *line = "set the parent of " + p.object + " to " + std::to_string(p.expected);
    } else if (p.kind == "parent-records") {
      rebuild->insert(p.ino);
    } else if (p.kind == "orphan") {
      return Orphan(p, line);
    } else if (p.kind == "orphan-chunks") {
      NX_TRY(E()->Update([&](kv::Txn& txn) {
        return txn.Put(
            keys::DelFile(p.ino, static_cast<uint64_t>(std::max<int64_t>(p.expected, 1))), "");
      }));
      *line = "queued the chunks of " + p.object + " for deletion (gc --delete releases them)";
    } else if (p.kind == "stray-records") {
      NX_TRY(E()->Update([&](kv::Txn& txn) -> Status {
        NX_TRY(DeletePrefix(txn, keys::ParentPrefix(p.ino)));
        NX_TRY(DeletePrefix(txn, keys::XattrPrefix(p.ino)));
        return txn.Delete(keys::Symlink(p.ino));
      }));
      *line = "removed the parent, symlink and xattr records of " + p.object;
    } else if (p.kind == "entries-without-dir") {
      NX_TRY(
          E()->Update([&](kv::Txn& txn) { return DeletePrefix(txn, keys::DentryPrefix(p.ino)); }));
      *line = "removed the entries of missing directory " + p.object +
              " (what they named is moved to lost+found by the next round)";
    } else if (p.kind == "refcount") {
      return Refcount(p, line);
    } else if (p.kind == "pending-referenced" || p.kind == "bad-pending" ||
               p.kind == "pending-live" || p.kind == "bad-refcount" ||
               p.kind == "bad-slice-batch") {
      NX_TRY(E()->Update([&](kv::Txn& txn) { return txn.Delete(p.name); }));
      *line = "removed the record of " + p.object;
    } else if (p.kind == "counter") {
      NX_TRY(E()->Update(
          [&](kv::Txn& txn) { return txn.Add(keys::Counter(p.name), p.expected - p.actual); }));
      *line = "set " + p.object + " to " + std::to_string(p.expected);
    }
    return Status::OK();
  }

  static Result<Attr> GetAttr(kv::Txn& txn, Ino ino) {
    NX_ASSIGN_OR_RETURN(auto v, txn.Get(keys::Attr(ino)));
    if (!v) return Err(ENOENT, InoName(ino) + " no longer exists");
    Attr a;
    NX_TRY(keys::DecodeAttr(*v, &a).With(InoName(ino)));
    return a;
  }

  static Status DeletePrefix(kv::Txn& txn, const std::string& prefix) {
    std::vector<std::string> ks;
    NX_TRY(txn.ScanPrefix(prefix, 0, [&](std::string_view k, std::string_view) {
      ks.emplace_back(k);
      return true;
    }));
    for (const auto& k : ks) NX_TRY(txn.Delete(k));
    return Status::OK();
  }

  Status Refcount(const Problem& p, std::string* line) {
    const std::string key = keys::SliceRef(p.slice, p.size);
    NX_TRY(E()->Update([&](kv::Txn& txn) -> Status {
      if (p.expected >= 2) {
        std::string v;
        PutBE32(&v, static_cast<uint32_t>(p.expected));
        return txn.Put(key, v);
      }
      NX_TRY(txn.Delete(key));
      if (p.expected == 0 && p.name != "nodelete")
        return txn.Put(keys::DelSlice(p.slice, p.size), "");
      return Status::OK();
    }));
    *line = "set the reference count of " + p.object + " to " + std::to_string(p.expected) +
            (p.expected == 0 && p.name != "nodelete" ? " (queued for deletion)" : "");
    return Status::OK();
  }

  Result<Ino> LostFound() {
    if (lost_found_) return lost_found_;
    auto e = meta_->Lookup(meta::Context::Root(), kRootIno, kLostFound);
    if (!e && e.error().code() == ENOENT) {
      e = meta_->Mkdir(meta::Context::Root(), kRootIno, kLostFound, 0700);
    }
    if (!e) return Err(e.error().With("lost+found"));
    if (e->attr.type != FileType::kDir) return Err(ENOTDIR, "/lost+found is not a directory");
    lost_found_ = e->ino;
    return lost_found_;
  }

  // An inode no entry names: unlinked and not open -> deleted as its last unlink would have;
  // otherwise moved to /lost+found/<ino>.
  Status Orphan(const Problem& p, std::string* line) {
    if (p.actual == 0 && static_cast<FileType>(p.type) != FileType::kDir) {
      NX_TRY(E()->Update([&](kv::Txn& txn) -> Status {
        NX_ASSIGN_OR_RETURN(Attr a, GetAttr(txn, p.ino));
        if (a.nlink != 0) return Status::Errno(EAGAIN, "changed meanwhile");
        NX_TRY(txn.Delete(keys::Attr(p.ino)));
        NX_TRY(txn.Delete(keys::Symlink(p.ino)));
        NX_TRY(DeletePrefix(txn, keys::XattrPrefix(p.ino)));
        NX_TRY(DeletePrefix(txn, keys::ParentPrefix(p.ino)));
        NX_TRY(txn.Delete(Key8('F', p.ino)));
        NX_TRY(txn.Delete(Key8('P', p.ino)));
        bool chunks = false;
        NX_TRY(txn.ScanPrefix(keys::ChunkPrefix(p.ino), 1, [&](std::string_view, std::string_view) {
          chunks = true;
          return false;
        }));
        if (a.type == FileType::kFile && (a.length > 0 || chunks)) {
          NX_TRY(txn.Put(keys::DelFile(p.ino, std::max<uint64_t>(a.length, 1)), ""));
        }
        if (a.type == FileType::kFile) {
          NX_TRY(txn.Add(keys::Counter("usedSpace"), -static_cast<int64_t>(a.length)));
        }
        return txn.Add(keys::Counter("totalInodes"), -1);
      }));
      *line = "deleted " + p.object + " (unlinked, open nowhere; gc --delete releases its data)";
      return Status::OK();
    }
    NX_ASSIGN_OR_RETURN(Ino lf, LostFound());
    if (lf == p.ino) return Status::OK();
    std::string name = std::to_string(p.ino);
    NX_TRY(E()->Update([&](kv::Txn& txn) -> Status {
      NX_ASSIGN_OR_RETURN(Attr a, GetAttr(txn, p.ino));
      NX_ASSIGN_OR_RETURN(Attr dir, GetAttr(txn, lf));
      name = std::to_string(p.ino);
      for (int n = 1;; ++n) {
        NX_ASSIGN_OR_RETURN(auto taken, txn.Get(keys::Dentry(lf, name)));
        if (!taken) break;
        name = std::to_string(p.ino) + "-" + std::to_string(n);
      }
      NX_TRY(txn.Put(keys::Dentry(lf, name), keys::EncodeDentry(a.type, p.ino)));
      NX_TRY(DeletePrefix(txn, keys::ParentPrefix(p.ino)));
      a.parent = lf;
      if (a.type == FileType::kDir) {
        if (a.nlink < 2) a.nlink = 2;  // the subdirectory count is checked by the next round
        ++dir.nlink;
      } else {
        a.nlink = 1;
      }
      NX_TRY(txn.Put(keys::Attr(lf), keys::EncodeAttr(dir)));
      return txn.Put(keys::Attr(p.ino), keys::EncodeAttr(a));
    }));
    *line = "moved " + p.object + " to /" + kLostFound + "/" + name;
    return Status::OK();
  }

  // Rewrites the parent records of multiply-linked inodes from the entries naming them (one
  // scan of the entries; memory: the inodes being rebuilt and their parents).
  Status RebuildParents(const std::set<Ino>& inos, std::vector<std::string>* done) {
    std::map<Ino, std::map<Ino, uint32_t>> counts;
    NX_TRY(E()->View([&](kv::Txn& txn) -> Status {
      counts.clear();
      std::string begin = "A";
      const std::string end = PrefixEnd("A");
      std::vector<std::pair<std::string, std::string>> batch;
      for (;;) {
        batch.clear();
        NX_TRY(txn.Scan(begin, end, opts_.scan_batch, [&](std::string_view k, std::string_view v) {
          batch.emplace_back(std::string(k), std::string(v));
          return true;
        }));
        for (const auto& [k, v] : batch) {
          if (k.size() <= 10 || k[9] != 'D') continue;
          FileType t;
          Ino child;
          if (!keys::DecodeDentry(v, &t, &child).ok() || !inos.count(child)) continue;
          ++counts[child][GetBE64(k.data() + 1)];
        }
        if (batch.size() < opts_.scan_batch) return Status::OK();
        begin = batch.back().first + '\0';
      }
    }));
    for (Ino ino : inos) {
      const auto& parents = counts[ino];
      uint32_t total = 0;
      for (const auto& [p, c] : parents) total += c;
      Status s = E()->Update([&](kv::Txn& txn) -> Status {
        NX_ASSIGN_OR_RETURN(Attr a, GetAttr(txn, ino));
        NX_TRY(DeletePrefix(txn, keys::ParentPrefix(ino)));
        if (total >= 2) {
          a.parent = 0;
          for (const auto& [p, c] : parents) {
            std::string v;
            PutBE32(&v, c);
            NX_TRY(txn.Put(keys::Parent(ino, p), v));
          }
        } else if (total == 1) {
          a.parent = parents.begin()->first;
        }
        return txn.Put(keys::Attr(ino), keys::EncodeAttr(a));
      });
      Emit(done,
           s.ok()
               ? "rebuilt the parent records of " + InoName(ino) + " (" + std::to_string(total) +
                     " links in " + std::to_string(parents.size()) + " directories)"
               : "could not rebuild the parent records of " + InoName(ino) + ": " + s.ToString());
    }
    return Status::OK();
  }

  meta::Meta* meta_;
  const FsckOptions& opts_;
  Ino lost_found_ = 0;
};

// --path: the subtree under one directory, walked through its entries (no whole-volume
// scan, so no orphan, reference-count or counter checks). Memory: the directories waiting on
// the walk's stack, and one batch of entries.
class SubtreeChecker {
 public:
  SubtreeChecker(meta::Meta* m, object::ObjectStore* store, const FsckOptions& o, bool report)
      : meta_(m), store_(store), opts_(o), report_(report), bs_(m->format().block_size) {}

  Status Run() {
    stats = {};
    problems.clear();
    const auto ctx = meta::Context::Root();
    Ino top = kRootIno;
    std::string_view rest = opts_.path;
    while (!rest.empty()) {
      const size_t slash = rest.find('/');
      const std::string_view part = rest.substr(0, slash);
      rest = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
      if (part.empty() || part == ".") continue;
      auto e = meta_->Lookup(ctx, top, part);
      if (!e) return e.error().With("--path " + opts_.path);
      top = e->ino;
    }
    auto ta = meta_->GetAttr(top);
    if (!ta) return ta.error().With("--path " + opts_.path);
    if (ta->type != FileType::kDir) return Status::Errno(ENOTDIR, "--path " + opts_.path);
    std::vector<Ino> stack{top};
    while (!stack.empty()) {
      const Ino dir = stack.back();
      stack.pop_back();
      NX_TRY(Dir(dir, &stack));
    }
    return Status::OK();
  }

  FsckStats stats;
  std::vector<Problem> problems;

 private:
  void Add(Problem p) {
    if (report_ && opts_.on_problem) opts_.on_problem(p);
    problems.push_back(std::move(p));
  }

  Status Dir(Ino dir, std::vector<Ino>* stack) {
    auto da = meta_->GetAttr(dir);
    if (!da) return Status::OK();
    ++stats.inodes;
    uint32_t subdirs = 0;
    std::string after;
    std::vector<meta::DirEntry> batch;
    for (;;) {
      NX_TRY(meta_->ReadDir(meta::Context::Root(), dir, after, opts_.scan_batch, false, &batch));
      for (const auto& e : batch) {
        ++stats.entries;
        if (e.type == FileType::kDir) ++subdirs;
        auto a = meta_->GetAttr(e.ino);
        Problem p;
        p.parent = dir;
        p.name = e.name;
        p.ino = e.ino;
        p.object = EntryName(dir, e.name);
        p.repairable = true;
        if (!a) {
          if (a.error().code() != ENOENT) return a.error();
          p.kind = "dangling-entry";
          p.message = "names " + InoName(e.ino) + ", which does not exist";
          Add(std::move(p));
          continue;
        }
        if (a->type != e.type) {
          p.kind = "entry-type";
          p.message = std::string("says ") + TypeName(e.type) + " but " + InoName(e.ino) +
                      " is a " + TypeName(a->type);
          p.type = static_cast<uint8_t>(a->type);
          Add(p);
        }
        const bool single = a->type == FileType::kDir || a->nlink == 1;
        if (single && a->parent != dir) {
          Problem q;
          q.kind = "parent";
          q.object = InoName(e.ino);
          q.message = "Attr.parent is " + std::to_string(a->parent) + " but directory " +
                      std::to_string(dir) + " names it";
          q.repairable = true;
          q.ino = e.ino;
          q.expected = static_cast<int64_t>(dir);
          Add(std::move(q));
        }
        if (a->type == FileType::kDir) {
          stack->push_back(e.ino);
        } else {
          ++stats.inodes;
          if (a->type == FileType::kFile) NX_TRY(File(e.ino, *a));
        }
      }
      if (batch.size() < opts_.scan_batch) break;
      after = batch.back().name;
    }
    if (da->nlink != 2 + subdirs) {
      Problem p;
      p.kind = "nlink";
      p.object = InoName(dir);
      p.message = "directory nlink is " + std::to_string(da->nlink) + ", expected " +
                  std::to_string(2 + subdirs) + " (2 + subdirectories)";
      p.repairable = true;
      p.ino = dir;
      p.expected = 2 + subdirs;
      p.actual = da->nlink;
      Add(std::move(p));
    }
    return Status::OK();
  }

  Status File(Ino ino, const Attr& a) {
    const uint64_t chunks = (a.length + kChunkSize - 1) / kChunkSize;
    for (uint64_t index = 0; index < chunks; ++index) {
      auto recs = meta_->ReadChunk(ino, static_cast<uint32_t>(index));
      if (!recs) {
        Problem p;
        p.kind = "bad-chunk";
        p.object = "chunk " + std::to_string(index) + " of " + InoName(ino);
        p.message = recs.error().ToString();
        Add(std::move(p));
        continue;
      }
      ++stats.chunks;
      stats.slice_records += recs->size();
      if (!opts_.check_blocks) continue;
      for (const Slice& s : *recs) {
        if (s.id == 0 || s.off + uint64_t(s.len) > s.size) continue;
        const uint64_t base = index * kChunkSize + s.pos;
        for (uint32_t blk = s.off / bs_; uint64_t(blk) * bs_ < uint64_t(s.off) + s.len; ++blk) {
          const uint32_t want = std::min(bs_, s.size - blk * bs_);
          const std::string key = chunk::BlockKey(opts_.block_prefix, s.id, blk, want);
          ++stats.blocks_checked;
          auto info = store_->Head(key);
          std::string why;
          if (!info) {
            why = info.error().code() == ENOENT ? "missing" : info.error().ToString();
          } else if (info->size != want) {
            why = "has " + std::to_string(info->size) + " bytes, expected " + std::to_string(want);
          }
          if (why.empty()) continue;
          const uint64_t x = std::max<uint64_t>(s.off, uint64_t(blk) * bs_);
          const uint64_t y = std::min<uint64_t>(uint64_t(s.off) + s.len, uint64_t(blk + 1) * bs_);
          Problem p;
          p.kind = "missing-block";
          p.object = "block " + key;
          p.message = SliceName(s.id, s.size) + " block " + std::to_string(blk) + ": " + why +
                      "; " + InoName(ino) + " bytes [" + std::to_string(base + x - s.off) + ", " +
                      std::to_string(base + y - s.off) + ") (cannot be repaired)";
          Add(std::move(p));
        }
      }
    }
    return Status::OK();
  }

  meta::Meta* meta_;
  object::ObjectStore* store_;
  const FsckOptions& opts_;
  bool report_;
  uint32_t bs_;
};

}  // namespace

Result<FsckReport> Fsck(meta::Meta* meta, object::ObjectStore* store, const FsckOptions& options) {
  if (options.ino_window == 0 || options.slice_window == 0 || options.scan_batch == 0) {
    return Err(EINVAL, "fsck: windows and batch must be positive");
  }
  const bool subtree = !options.path.empty() && options.path != "/";
  auto check = [&](bool report, FsckStats* stats, std::vector<Problem>* out) -> Status {
    if (subtree) {
      SubtreeChecker c(meta, store, options, report);
      NX_TRY(c.Run());
      *stats = c.stats;
      *out = std::move(c.problems);
    } else {
      Checker c(meta, store, options, report);
      NX_TRY(c.Run());
      *stats = c.stats;
      *out = std::move(c.problems);
    }
    return Status::OK();
  };
  FsckReport report;
  struct {
    FsckStats stats;
    std::vector<Problem> problems;
  } first;
  NX_TRY(check(true, &first.stats, &first.problems));
  report.stats = first.stats;
  report.problem_count = first.problems.size();
  report.problems = first.problems;
  if (report.problems.size() > options.max_problems) report.problems.resize(options.max_problems);
  if (!options.repair || first.problems.empty()) return report;

  std::vector<Problem> current = std::move(first.problems);
  for (int round = 0; round < 3; ++round) {
    bool any = false;
    for (const Problem& p : current) any |= p.repairable;
    if (!any) break;
    Repairer r(meta, options);
    NX_TRY(r.Repair(current, &report.repairs));
    FsckStats ignored;
    NX_TRY(check(false, &ignored, &current));
  }
  report.remaining = std::move(current);
  report.repaired_all = report.remaining.empty();
  return report;
}

bool ParseBlockKey(std::string_view key, std::string_view prefix, uint64_t* id, uint32_t* block,
                   uint32_t* size) {
  const std::string head = std::string(prefix) + "chunks/";
  if (key.substr(0, head.size()) != head) return false;
  std::string_view rest = key.substr(head.size());
  uint64_t parts[5];
  int n = 0;
  const char seps[] = {'/', '/', '_', '_', '\0'};
  for (int i = 0; i < 5; ++i) {
    uint64_t v = 0;
    size_t j = 0;
    while (j < rest.size() && rest[j] >= '0' && rest[j] <= '9' && j < 20) {
      v = v * 10 + static_cast<uint64_t>(rest[j] - '0');
      ++j;
    }
    if (j == 0) return false;
    if (j > 1 && rest[0] == '0') return false;  // no leading zeros: the key is canonical
    parts[n++] = v;
    rest.remove_prefix(j);
    if (seps[i] == '\0') {
      if (!rest.empty()) return false;
    } else {
      if (rest.empty() || rest[0] != seps[i]) return false;
      rest.remove_prefix(1);
    }
  }
  if (parts[0] != parts[2] / 1000000 || parts[1] != parts[2] / 1000) return false;
  if (parts[3] > UINT32_MAX || parts[4] > UINT32_MAX || parts[4] == 0) return false;
  *id = parts[2];
  *block = static_cast<uint32_t>(parts[3]);
  *size = static_cast<uint32_t>(parts[4]);
  return true;
}

}  // namespace nexus::ops
