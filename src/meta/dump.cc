// nexusfs dump / load: reading a volume from one engine snapshot into the event stream, and
// writing the stream back into an empty engine with verification (docs/dump.md).
#include "meta/dump.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "common/encoding.h"
#include "meta/dump_internal.h"
#include "meta/keys.h"
#include "meta/kv/engine.h"

namespace nexus::meta::dump {

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const char* FileTypeName(FileType t) {
  switch (t) {
    case FileType::kFile:
      return "file";
    case FileType::kDir:
      return "dir";
    case FileType::kSymlink:
      return "symlink";
    case FileType::kFifo:
      return "fifo";
    case FileType::kBlockDev:
      return "blockdev";
    case FileType::kCharDev:
      return "chardev";
    case FileType::kSocket:
      return "socket";
  }
  return "unknown";
}

bool ValidFileType(uint8_t t) { return t >= 1 && t <= 7; }

bool ParseFileType(std::string_view name, FileType* t) {
  for (uint8_t i = 1; i <= 7; ++i) {
    if (name == FileTypeName(static_cast<FileType>(i))) {
      *t = static_cast<FileType>(i);
      return true;
    }
  }
  return false;
}

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

std::string Base64Encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

bool Base64Decode(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 != 0) return false;
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  for (size_t i = 0; i < in.size(); i += 4) {
    int pad = 0;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; ++j) {
      char c = in[i + j];
      if (c == '=' && i + 4 == in.size() && j >= 2) {
        ++pad;
        v <<= 6;
        continue;
      }
      int d = val(c);
      if (d < 0 || pad) return false;
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out->push_back(static_cast<char>(v >> 16));
    if (pad < 2) out->push_back(static_cast<char>((v >> 8) & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(v & 0xff));
  }
  return true;
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    uint8_t c = static_cast<uint8_t>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t j = 1; j <= n; ++j) {
      uint8_t d = static_cast<uint8_t>(s[i + j]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Dump: the engine snapshot -> events
// ---------------------------------------------------------------------------------------------

using KVs = std::vector<std::pair<std::string, std::string>>;

// Visits every key of [begin, end) in pages of `batch` keys; `visit` sees each page after the
// engine's scan returned (so it may read the transaction again).
Status ScanPaged(kv::Txn& txn, std::string begin, const std::string& end, size_t batch,
                 const std::function<Status(const KVs&)>& visit) {
  KVs page;
  for (;;) {
    page.clear();
    NX_TRY(txn.Scan(begin, end, batch, [&](std::string_view k, std::string_view v) {
      page.emplace_back(std::string(k), std::string(v));
      return true;
    }));
    if (page.empty()) return Status::OK();
    NX_TRY(visit(page));
    if (page.size() < batch) return Status::OK();
    begin = page.back().first;
    begin.push_back('\0');
  }
}

Status BadKey(std::string_view what, std::string_view key) {
  return Status::Corruption("dump: malformed " + std::string(what) + " key (" +
                            std::to_string(key.size()) + " bytes) in the engine");
}

Status DumpTxn(kv::Txn& txn, Visitor& w, const DumpOptions& o, Stats* stats) {
  // Settings.
  NX_ASSIGN_OR_RETURN(auto setting, txn.Get(keys::kSetting));
  if (!setting) return Status::NotFound("the engine holds no volume (not formatted)");
  meta::Format f;
  std::string error;
  if (!meta::Format::FromJson(*setting, &f, &error)) {
    return Status::Corruption("volume settings: " + error);
  }
  NX_TRY(w.Setting(f.ToJson(/*redact=*/!o.keep_secrets)));

  // Counters, less what the files unlinked while open still hold: they are dumped as removed
  // files, as the cleanup of their sessions would leave them.
  std::map<std::string, uint64_t> counters;
  NX_TRY(ScanPaged(txn, "C", PrefixEnd("C"), o.scan_batch, [&](const KVs& page) -> Status {
    for (const auto& [k, v] : page) counters[k.substr(1)] = keys::DecodeU64(v);
    return Status::OK();
  }));
  Ino last_open = 0;
  NX_TRY(ScanPaged(txn, "O", PrefixEnd("O"), o.scan_batch, [&](const KVs& page) -> Status {
    for (const auto& kv : page) {
      if (kv.first.size() != 17) return BadKey("open-file", kv.first);
      Ino ino = GetBE64(kv.first.data() + 1);
      if (ino == last_open) continue;
      last_open = ino;
      NX_ASSIGN_OR_RETURN(auto av, txn.Get(keys::Attr(ino)));
      if (!av) continue;
      Attr a;
      NX_TRY(keys::DecodeAttr(*av, &a));
      if (a.nlink != 0) continue;
      counters["totalInodes"] -= 1;
      if (a.type == FileType::kFile) counters["usedSpace"] -= a.length;
    }
    return Status::OK();
  }));
  NX_TRY(w.Counters({counters.begin(), counters.end()}));

  // The tree: every key of an inode shares the prefix A<ino>, so one ordered scan visits the
  // inodes one after the other. Within an inode the chunks (C) and entries (D) sort before the
  // attributes (I): they are held back until the attributes arrive, up to a bound past which
  // (a huge directory or file) the attributes are read ahead with a point read instead.
  std::vector<std::pair<Ino, uint64_t>> unlinked;  // nlink 0: dumped as removed files
  Ino cur = 0;
  bool begun = false, live = false;
  KVs held;
  size_t held_bytes = 0;
  std::function<Status(std::string_view, std::string_view)> emit;
  auto begin_inode = [&](const std::optional<std::string>& av) -> Status {
    std::optional<Attr> attr;
    if (av) {
      Attr a;
      NX_TRY(keys::DecodeAttr(*av, &a).With("inode " + std::to_string(cur)));
      attr = a;
    }
    live = attr && attr->nlink > 0;
    if (attr && !live && attr->type == FileType::kFile && attr->length > 0) {
      unlinked.emplace_back(cur, attr->length);
    }
    if (live) ++stats->inodes;
    begun = true;
    NX_TRY(w.InodeBegin(cur, live ? attr : std::nullopt));
    KVs pending;
    pending.swap(held);
    held_bytes = 0;
    for (const auto& [k, v] : pending) NX_TRY(emit(k, v));
    return Status::OK();
  };
  auto end_inode = [&]() -> Status {
    if (cur == 0) return Status::OK();
    if (!begun) NX_TRY(begin_inode(std::nullopt));  // no attributes: a removed file's chunks
    return w.InodeEnd(cur);
  };
  emit = [&](std::string_view k, std::string_view v) -> Status {
    const Ino ino = cur;
    switch (k[9]) {
      case 'C': {
        if (k.size() != 14) return BadKey("chunk", k);
        std::vector<Slice> slices;
        NX_TRY(keys::DecodeSlices(v, &slices).With("inode " + std::to_string(ino)));
        ++stats->chunks;
        return w.Chunk(ino, GetBE32(k.data() + 10), slices);
      }
      case 'D': {
        if (!live) return Status::OK();
        FileType t;
        Ino child;
        NX_TRY(keys::DecodeDentry(v, &t, &child).With("entry of inode " + std::to_string(ino)));
        ++stats->entries;
        return w.Entry(ino, k.substr(10), t, child);
      }
      case 'P':
        if (!live) return Status::OK();
        if (k.size() != 18 || v.size() != 4) return BadKey("parent", k);
        return w.Parent(ino, GetBE64(k.data() + 10), GetBE32(v.data()));
      case 'S':
        if (!live) return Status::OK();
        return w.Symlink(ino, v);
      case 'X':
        if (!live) return Status::OK();
        ++stats->xattrs;
        return w.Xattr(ino, k.substr(10), v);
      default:
        return BadKey("inode", k);
    }
  };
  NX_TRY(ScanPaged(txn, "A", PrefixEnd("A"), o.scan_batch, [&](const KVs& page) -> Status {
    for (const auto& [k, v] : page) {
      if (k.size() < 10) return BadKey("inode", k);
      Ino ino = GetBE64(k.data() + 1);
      char kind = k[9];
      if (ino != cur) {
        NX_TRY(end_inode());
        cur = ino;
        begun = false;
        held.clear();
        held_bytes = 0;
      }
      if (kind == 'I') {
        if (k.size() != 10) return BadKey("attribute", k);
        if (!begun) NX_TRY(begin_inode(v));
        continue;
      }
      if (begun) {
        NX_TRY(emit(k, v));
        continue;
      }
      if (kind != 'C' && kind != 'D') {  // sorts after I: there are no attributes
        NX_TRY(begin_inode(std::nullopt));
        NX_TRY(emit(k, v));
        continue;
      }
      held.emplace_back(k, v);
      held_bytes += k.size() + v.size();
      if (held_bytes > o.max_held_bytes) {
        NX_ASSIGN_OR_RETURN(auto av, txn.Get(keys::Attr(ino)));
        NX_TRY(begin_inode(av));
      }
    }
    return Status::OK();
  }));
  NX_TRY(end_inode());

  // Pending deletions, merged with the files unlinked while open (both in inode order).
  size_t u = 0;
  auto flush_unlinked = [&](Ino upto) -> Status {
    while (u < unlinked.size() && unlinked[u].first < upto) {
      ++stats->deleted_files;
      NX_TRY(w.DeletedFile(unlinked[u].first, unlinked[u].second));
      ++u;
    }
    return Status::OK();
  };
  NX_TRY(ScanPaged(txn, "D", PrefixEnd("D"), o.scan_batch, [&](const KVs& page) -> Status {
    for (const auto& kv : page) {
      if (kv.first.size() != 17) return BadKey("removed-file", kv.first);
      Ino ino = GetBE64(kv.first.data() + 1);
      NX_TRY(flush_unlinked(ino));
      ++stats->deleted_files;
      NX_TRY(w.DeletedFile(ino, GetBE64(kv.first.data() + 9)));
    }
    return Status::OK();
  }));
  NX_TRY(flush_unlinked(UINT64_MAX));
  NX_TRY(ScanPaged(txn, "L", PrefixEnd("L"), o.scan_batch, [&](const KVs& page) -> Status {
    for (const auto& kv : page) {
      if (kv.first.size() != 13) return BadKey("released-slice", kv.first);
      ++stats->deleted_slices;
      NX_TRY(w.DeletedSlice(GetBE64(kv.first.data() + 1), GetBE32(kv.first.data() + 9)));
    }
    return Status::OK();
  }));
  NX_TRY(ScanPaged(txn, "K", PrefixEnd("K"), o.scan_batch, [&](const KVs& page) -> Status {
    for (const auto& kv : page) {
      if (kv.first.size() != 13 || kv.second.size() != 4) return BadKey("slice-ref", kv.first);
      ++stats->slice_refs;
      NX_TRY(w.SliceRef(GetBE64(kv.first.data() + 1), GetBE32(kv.first.data() + 9),
                        GetBE32(kv.second.data())));
    }
    return Status::OK();
  }));
  return w.End();
}

// ---------------------------------------------------------------------------------------------
// Load: events -> batched writes, with verification
// ---------------------------------------------------------------------------------------------

// Runs write transactions of bounded size on `threads` threads.
class BatchWriter {
 public:
  BatchWriter(kv::Engine& engine, int threads) : engine_(engine) {
    for (int i = 0; i < std::max(threads, 1); ++i) workers_.emplace_back([this] { Run(); });
    max_queued_ = 2 * workers_.size();
  }
  ~BatchWriter() { (void)Finish(); }

  Status Submit(KVs batch) {
    std::unique_lock lock(mu_);
    space_.wait(lock, [&] { return queue_.size() < max_queued_ || !first_.ok(); });
    if (!first_.ok()) return first_;
    queue_.push_back(std::move(batch));
    ready_.notify_one();
    return Status::OK();
  }
  // Waits for every submitted batch; the first error of any.
  Status Finish() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
      ready_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
    return first_;
  }

 private:
  void Run() {
    for (;;) {
      KVs batch;
      {
        std::unique_lock lock(mu_);
        ready_.wait(lock, [&] { return !queue_.empty() || done_; });
        if (queue_.empty()) return;
        batch = std::move(queue_.front());
        queue_.pop_front();
        space_.notify_one();
        if (!first_.ok()) continue;
      }
      Status s = engine_.Update([&](kv::Txn& txn) -> Status {
        for (const auto& [k, v] : batch) NX_TRY(txn.Put(k, v));
        return Status::OK();
      });
      if (!s.ok()) {
        std::lock_guard lock(mu_);
        if (first_.ok()) first_ = s;
        space_.notify_all();
      }
    }
  }

  kv::Engine& engine_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<KVs> queue_;
  size_t max_queued_ = 2;
  bool done_ = false;
  Status first_;
};

Status Bad(const std::string& msg) { return Status::Corruption("invalid dump: " + msg); }

std::string InoStr(Ino ino) { return std::to_string(ino); }

class Loader : public Visitor {
 public:
  Loader(kv::Engine& engine, const LoadOptions& o, Stats* stats)
      : o_(o), stats_(stats), writer_(engine, o.threads) {}

  Status Setting(const std::string& json) override {
    if (state_ != 0) return Bad("the settings come twice or late");
    std::string error;
    if (!meta::Format::FromJson(json, &format_, &error)) return Bad("settings: " + error);
    if (format_.name.empty() || format_.uuid.empty()) return Bad("settings without name or uuid");
    setting_ = format_.ToJson();
    state_ = 1;
    return Status::OK();
  }
  Status Counters(const std::vector<std::pair<std::string, uint64_t>>& counters) override {
    if (state_ != 1) return Bad("the counters are not right after the settings");
    for (const auto& [name, v] : counters) {
      if (name.empty() || name.size() > 64) return Bad("a counter name is empty or too long");
      counters_[name] = v;
    }
    state_ = 2;
    return Status::OK();
  }
  Status InodeBegin(Ino ino, const std::optional<Attr>& attr) override {
    if (state_ != 2 || in_inode_) return Bad("inode " + InoStr(ino) + " out of place");
    if (ino == 0 || ino >= kMaxMetaIno || ino <= last_ino_) {
      return Bad("inode " + InoStr(ino) + " is out of range or out of order");
    }
    last_ino_ = ino;
    in_inode_ = true;
    attr_ = attr;
    subdirs_ = 0;
    parents_ = 0;
    if (attr) {
      const Attr& a = *attr;
      if (!ValidFileType(static_cast<uint8_t>(a.type)) || a.mode > 07777 || a.nlink == 0) {
        return Bad("inode " + InoStr(ino) + " has invalid attributes");
      }
      if (ino == kRootIno && a.type != FileType::kDir) return Bad("the root is not a directory");
      live_.push_back({ino, a.parent, a.nlink, a.type});
      if (ino != kRootIno) ++total_inodes_;
      if (a.type == FileType::kFile) used_space_ += a.length;
      ++stats_->inodes;
      NX_TRY(Put(keys::Attr(ino), keys::EncodeAttr(a)));
    } else if (ino == kRootIno) {
      return Bad("the root has no attributes");
    }
    return Status::OK();
  }
  Status Chunk(Ino ino, uint32_t index, const std::vector<Slice>& slices) override {
    NX_TRY(InInode(ino, "chunk"));
    if (attr_ && attr_->type != FileType::kFile) return Bad("chunk of non-file " + InoStr(ino));
    if (slices.empty()) return Bad("empty chunk " + std::to_string(index) + " of " + InoStr(ino));
    std::string v;
    for (const Slice& s : slices) {
      if (uint64_t(s.pos) + s.len > kChunkSize || uint64_t(s.off) + s.len > s.size) {
        if (s.id != 0) return Bad("slice record out of range in inode " + InoStr(ino));
      }
      if (s.id != 0) {
        refs_.push_back({s.id, s.size});
        max_slice_ = std::max(max_slice_, s.id);
      }
      keys::AppendSlice(&v, s);
    }
    ++stats_->chunks;
    return Put(keys::Chunk(ino, index), v);
  }
  Status Entry(Ino dir, std::string_view name, FileType type, Ino child) override {
    NX_TRY(InInode(dir, "entry"));
    if (!attr_ || attr_->type != FileType::kDir)
      return Bad("entry in non-directory " + InoStr(dir));
    if (name.empty() || name.size() > kMaxNameLen || name == "." || name == ".." ||
        name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
      return Bad("invalid entry name in directory " + InoStr(dir));
    }
    if (!ValidFileType(static_cast<uint8_t>(type)) || child <= kRootIno || child >= kMaxMetaIno) {
      return Bad("invalid entry in directory " + InoStr(dir));
    }
    if (type == FileType::kDir) ++subdirs_;
    links_.push_back({child, dir, type});
    ++stats_->entries;
    return Put(keys::Dentry(dir, name), keys::EncodeDentry(type, child));
  }
  Status Parent(Ino ino, Ino parent, uint32_t count) override {
    NX_TRY(InInode(ino, "parent record"));
    if (!attr_ || attr_->type == FileType::kDir || attr_->parent != 0 || count == 0) {
      return Bad("unexpected parent record of inode " + InoStr(ino));
    }
    parents_ += count;
    parent_recs_.push_back({ino, parent, count});
    std::string v;
    PutBE32(&v, count);
    return Put(keys::Parent(ino, parent), v);
  }
  Status Symlink(Ino ino, std::string_view target) override {
    NX_TRY(InInode(ino, "symlink target"));
    if (!attr_ || attr_->type != FileType::kSymlink || target.empty() ||
        target.size() > kMaxSymlinkLen) {
      return Bad("unexpected symlink target of inode " + InoStr(ino));
    }
    return Put(keys::Symlink(ino), target);
  }
  Status Xattr(Ino ino, std::string_view name, std::string_view value) override {
    NX_TRY(InInode(ino, "xattr"));
    if (!attr_ || name.empty() || name.size() > kMaxXattrNameLen ||
        value.size() > kMaxXattrValueLen) {
      return Bad("invalid xattr of inode " + InoStr(ino));
    }
    ++stats_->xattrs;
    return Put(keys::Xattr(ino, name), value);
  }
  Status InodeEnd(Ino ino) override {
    NX_TRY(InInode(ino, "end"));
    in_inode_ = false;
    if (!attr_) return Status::OK();
    const Attr& a = *attr_;
    if (a.type == FileType::kDir && a.nlink != 2 + subdirs_) {
      return Bad("directory " + InoStr(ino) + " has nlink " + std::to_string(a.nlink) + " but " +
                 std::to_string(subdirs_) + " subdirectories");
    }
    if (a.type != FileType::kDir) {
      if (a.parent == 0 && parents_ != a.nlink) {
        return Bad("inode " + InoStr(ino) + " has nlink " + std::to_string(a.nlink) +
                   " but parent records for " + std::to_string(parents_) + " links");
      }
      if (a.parent != 0 && a.nlink != 1) {
        return Bad("inode " + InoStr(ino) + " has several links but one parent");
      }
    }
    return Status::OK();
  }
  Status DeletedFile(Ino ino, uint64_t length) override {
    NX_TRY(Section(3));
    if (ino == 0 || ino >= kMaxMetaIno) return Bad("removed file with an invalid inode");
    max_ino_ = std::max(max_ino_, ino);
    ++stats_->deleted_files;
    return Put(keys::DelFile(ino, length), "");
  }
  Status DeletedSlice(uint64_t id, uint32_t size) override {
    NX_TRY(Section(4));
    if (id == 0) return Bad("released slice 0");
    released_.push_back({id, size});
    max_slice_ = std::max(max_slice_, id);
    ++stats_->deleted_slices;
    return Put(keys::DelSlice(id, size), "");
  }
  Status SliceRef(uint64_t id, uint32_t size, uint32_t refs) override {
    NX_TRY(Section(5));
    if (id == 0 || refs < 2) return Bad("invalid slice reference count");
    shared_.push_back({{id, size}, refs});
    ++stats_->slice_refs;
    std::string v;
    PutBE32(&v, refs);
    return Put(keys::SliceRef(id, size), v);
  }
  Status End() override {
    NX_TRY(Section(6));
    ended_ = true;
    return Status::OK();
  }

  // After the parser returned: writes the rest, checks the whole and writes the settings last.
  Status Finish() {
    if (!ended_) return Bad("the dump ends early");
    NX_TRY(Verify());
    NX_TRY(FlushBatch());
    NX_TRY(writer_.Finish());
    KVs last;
    for (const auto& [name, v] : counters_)
      last.emplace_back(keys::Counter(name), keys::EncodeU64(v));
    last.emplace_back(std::string(keys::kSetting), setting_);
    stats_->keys += last.size();
    return writer_engine_update(last);
  }
  Status Abort() { return writer_.Finish(); }
  const meta::Format& format() const { return format_; }

  std::function<Status(const KVs&)> writer_engine_update;

 private:
  struct Live {
    Ino ino, parent;
    uint32_t nlink;
    FileType type;
  };
  struct Link {
    Ino child, dir;
    FileType type;
  };
  struct ParentRec {
    Ino ino, parent;
    uint32_t count;
  };
  using SliceKey = std::pair<uint64_t, uint32_t>;

  Status InInode(Ino ino, const char* what) {
    if (!in_inode_ || ino != last_ino_) return Bad(std::string(what) + " outside its inode");
    return Status::OK();
  }
  // Orders the sections after the tree.
  Status Section(int s) {
    if (in_inode_ || state_ < 2 || state_ > s) return Bad("records out of order");
    state_ = s;
    return Status::OK();
  }
  Status Put(std::string key, std::string_view value) {
    batch_bytes_ += key.size() + value.size();
    batch_.emplace_back(std::move(key), std::string(value));
    ++stats_->keys;
    if (batch_.size() >= o_.batch_keys || batch_bytes_ >= o_.batch_bytes) return FlushBatch();
    return Status::OK();
  }
  Status FlushBatch() {
    if (batch_.empty()) return Status::OK();
    KVs b;
    b.swap(batch_);
    batch_bytes_ = 0;
    return writer_.Submit(std::move(b));
  }

  Status Verify() {
    // Links: every entry names a live inode of its type; link counts and parents agree.
    std::sort(links_.begin(), links_.end(), [](const Link& a, const Link& b) {
      return a.child < b.child || (a.child == b.child && a.dir < b.dir);
    });
    size_t li = 0;
    for (const Live& n : live_) {
      max_ino_ = std::max(max_ino_, n.ino);
      if (li < links_.size() && links_[li].child < n.ino) {
        return Bad("an entry in directory " + InoStr(links_[li].dir) + " names inode " +
                   InoStr(links_[li].child) + ", which the dump does not hold");
      }
      size_t count = 0;
      for (; li < links_.size() && links_[li].child == n.ino; ++li, ++count) {
        const Link& l = links_[li];
        if (l.type != n.type) {
          return Bad("the entry of inode " + InoStr(n.ino) + " in directory " + InoStr(l.dir) +
                     " has the wrong type");
        }
        if (n.type == FileType::kDir || n.nlink == 1) {
          if (l.dir != n.parent) {
            return Bad("inode " + InoStr(n.ino) + " is in directory " + InoStr(l.dir) +
                       " but names " + InoStr(n.parent) + " as its parent");
          }
        }
      }
      if (n.ino == kRootIno) {
        if (count != 0) return Bad("an entry names the root");
        continue;
      }
      uint32_t want = n.type == FileType::kDir ? 1 : n.nlink;
      if (count != want) {
        return Bad("inode " + InoStr(n.ino) + " has " + std::to_string(count) +
                   " entries but should have " + std::to_string(want));
      }
    }
    if (li < links_.size()) {
      return Bad("an entry in directory " + InoStr(links_[li].dir) + " names inode " +
                 InoStr(links_[li].child) + ", which the dump does not hold");
    }
    // Parent records: each counts the entries of the inode in that directory.
    {
      std::sort(links_.begin(), links_.end(), [](const Link& a, const Link& b) {
        return a.child < b.child || (a.child == b.child && a.dir < b.dir);
      });
      size_t j = 0;
      for (const ParentRec& p : parent_recs_) {
        while (j < links_.size() && (links_[j].child < p.ino ||
                                     (links_[j].child == p.ino && links_[j].dir < p.parent))) {
          ++j;
        }
        uint32_t n = 0;
        for (size_t k = j;
             k < links_.size() && links_[k].child == p.ino && links_[k].dir == p.parent; ++k) {
          ++n;
        }
        if (n != p.count) {
          return Bad("inode " + InoStr(p.ino) + " has a parent record for directory " +
                     InoStr(p.parent) + " that does not match its entries");
        }
      }
    }
    links_.clear();
    links_.shrink_to_fit();
    // Slices: the K records hold the count of every slice named by two records or more; a
    // released slice (L) is named by none.
    std::sort(refs_.begin(), refs_.end());
    std::sort(released_.begin(), released_.end());
    size_t si = 0;
    for (size_t i = 0; i < refs_.size();) {
      size_t j = i;
      while (j < refs_.size() && refs_[j] == refs_[i]) ++j;
      uint32_t n = static_cast<uint32_t>(j - i);
      while (si < shared_.size() && shared_[si].first < refs_[i]) {
        return Bad("slice " + std::to_string(shared_[si].first.first) +
                   " has a reference count but no record names it");
      }
      bool has = si < shared_.size() && shared_[si].first == refs_[i];
      if ((n >= 2 && (!has || shared_[si].second != n)) || (n < 2 && has)) {
        return Bad("the reference count of slice " + std::to_string(refs_[i].first) +
                   " does not match the " + std::to_string(n) + " records naming it");
      }
      if (has) ++si;
      if (std::binary_search(released_.begin(), released_.end(), refs_[i])) {
        return Bad("slice " + std::to_string(refs_[i].first) + " is released but still named");
      }
      i = j;
    }
    if (si < shared_.size()) {
      return Bad("slice " + std::to_string(shared_[si].first.first) +
                 " has a reference count but no record names it");
    }
    // Counters: the usage ones are recomputed; the id allocators never go back.
    auto fix = [&](const char* name, uint64_t value, bool at_least) {
      auto it = counters_.find(name);
      uint64_t old = it == counters_.end() ? 0 : it->second;
      if (at_least ? old >= value : old == value) return;
      stats_->warnings.push_back(std::string("counter ") + name + " was " +
                                 std::to_string(static_cast<int64_t>(old)) +
                                 " in the dump; set to " + std::to_string(value));
      counters_[name] = value;
    };
    fix("totalInodes", total_inodes_, false);
    fix("usedSpace", used_space_, false);
    fix("nextInode", max_ino_ + 1, true);
    if (max_slice_ > 0) fix("nextSlice", max_slice_ + 1, true);
    return Status::OK();
  }

  LoadOptions o_;
  Stats* stats_;
  BatchWriter writer_;
  KVs batch_;
  size_t batch_bytes_ = 0;
  int state_ = 0;  // 0 start, 1 settings, 2 counters/tree, 3..5 deletions/refs, 6 end
  bool in_inode_ = false, ended_ = false;
  Ino last_ino_ = 0, max_ino_ = 0;
  std::optional<Attr> attr_;
  uint32_t subdirs_ = 0, parents_ = 0;
  meta::Format format_;
  std::string setting_;
  std::map<std::string, uint64_t> counters_;
  uint64_t total_inodes_ = 0, used_space_ = 0, max_slice_ = 0;
  std::vector<Live> live_;
  std::vector<Link> links_;
  std::vector<ParentRec> parent_recs_;
  std::vector<SliceKey> refs_, released_;
  std::vector<std::pair<SliceKey, uint32_t>> shared_;
};

// A FILE* stream positioned at its start again (for a re-run snapshot read).
Status Rewind(std::FILE* out) {
  std::fflush(out);
  if (fseeko(out, 0, SEEK_SET) != 0 || ftruncate(fileno(out), 0) != 0) {
    return Status(ESPIPE, "the engine re-ran the snapshot read and the output cannot be rewound");
  }
  return Status::OK();
}

}  // namespace

Result<Stats> Dump(kv::Engine& engine, std::FILE* out, const DumpOptions& options) {
  Stats stats;
  int attempt = 0;
  Status s = engine.View([&](kv::Txn& txn) -> Status {
    if (attempt++ > 0) NX_TRY(Rewind(out));
    stats = Stats{};
    std::unique_ptr<Writer> w = options.encoding == Encoding::kJson
                                    ? NewJsonWriter(out, options.keep_secrets)
                                    : NewBinaryWriter(out, options.keep_secrets);
    NX_TRY(DumpTxn(txn, *w, options, &stats));
    stats.bytes = w->bytes();
    return Status::OK();
  });
  if (!s.ok()) return Err(s.With("dump of " + engine.Name()));
  if (std::fflush(out) != 0 || std::ferror(out)) {
    return Err(Status(errno ? errno : EIO, std::string("dump: write failed: ") + strerror(errno)));
  }
  return stats;
}

Result<Stats> Load(kv::Engine& engine, std::FILE* in, const LoadOptions& options) {
  // The target must hold nothing at all.
  std::optional<std::string> setting;
  bool any = false;
  NX_TRY(engine.View([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(setting, txn.Get(keys::kSetting));
    any = false;
    return txn.Scan("", "", 1, [&](std::string_view, std::string_view) {
      any = true;
      return false;
    });
  }));
  if (setting) {
    meta::Format f;
    std::string error;
    std::string what = meta::Format::FromJson(*setting, &f, &error)
                           ? "volume '" + f.name + "' (uuid " + f.uuid + ")"
                           : "a volume";
    return Err(EEXIST, engine.Name() + " already holds " + what +
                           "; load needs an empty engine (run 'nexusfs destroy' first)");
  }
  if (any) {
    return Err(EEXIST, engine.Name() +
                           " is not empty (it holds keys but no volume); load needs "
                           "an empty engine");
  }

  // Which encoding: the binary magic, or JSON's '{'.
  char head[sizeof(kBinaryMagic)];
  size_t n = std::fread(head, 1, sizeof(head), in);
  std::string_view hv(head, n);
  Stats stats;
  Loader loader(engine, options, &stats);
  loader.writer_engine_update = [&](const KVs& kvs) {
    return engine.Update([&](kv::Txn& txn) -> Status {
      for (const auto& [k, v] : kvs) NX_TRY(txn.Put(k, v));
      return Status::OK();
    });
  };
  Status s;
  if (n == sizeof(kBinaryMagic) && std::equal(head, head + n, kBinaryMagic)) {
    s = ParseBinary(in, hv, loader);
  } else {
    size_t i = 0;
    while (i < n && std::isspace(static_cast<unsigned char>(head[i]))) ++i;
    if (i < n && head[i] == '{') {
      s = ParseJson(in, hv, loader);
    } else if (n == 0) {
      s = Status::Corruption("the dump is empty");
    } else {
      s = Status::Corruption("not a nexusfs dump (neither JSON nor the binary format)");
    }
  }
  if (s.ok()) s = loader.Finish();
  if (s.ok()) s = engine.Sync();
  if (!s.ok()) {
    (void)loader.Abort();
    Status r = engine.Reset();
    if (!r.ok()) {
      return Err(s.code(), s.message() + "; removing what was loaded failed too: " + r.message());
    }
    return Err(s.code(), s.message() + " (nothing was loaded)");
  }
  return stats;
}

}  // namespace nexus::meta::dump
