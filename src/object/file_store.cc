// file://DIR: one file per object under DIR; a key's '/' separated components are directories.
//
// Put writes a temporary file in the object's directory and renames it over the key, so readers
// see the old object or the whole new one, never a torn one; with StoreOptions::sync_puts the
// file and then its directory are fsynced before Put returns. Temporary files start with
// ".nxtmp-"; listings skip them, and keys may not contain such components.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/buffer.h"
#include "object/mapped_files.h"
#include "object/spare_files.h"
#include "object/stores.h"

namespace nexus::object {
namespace {

constexpr std::string_view kTmpPrefix = ".nxtmp-";

Status OsError(int err, std::string_view op, std::string_view key) {
  return Status::Errno(err, std::string(op) + " " + std::string(key) + ": " + std::strerror(err));
}

class FileStore final : public ObjectStore {
 public:
  FileStore(std::string dir, StoreOptions options) : dir_(std::move(dir)), options_(options) {}

  Status Put(std::string_view key, std::string_view data) override {
    return PutParts(key, std::span<const std::string_view>(&data, 1));
  }

  // The parts go to the temporary file with writev: a framed block's header and data are never
  // joined in memory.
  Status PutParts(std::string_view key, std::span<const std::string_view> parts) override {
    NX_TRY(Check(key));
    TempFile t;
    NX_TRY(OpenTemp(key, &t, O_WRONLY));
    Status s = WriteAll(t.fd, parts, key);
    return Finish(key, &t, s);
  }

  // The object's temporary file is written as the bytes come (Append: write, WriteAt: pwrite),
  // then Commit renames it over the key as Put does.
  std::unique_ptr<ObjectWriter> NewWriter(std::string_view key, uint64_t size) override {
    if (!Check(key).ok()) return nullptr;  // Put reports the error
    auto w = std::make_unique<Writer>(this, std::string(key), size);
    if (!OpenTemp(key, &w->temp, O_RDWR).ok()) return nullptr;
    return w;
  }

  Result<std::string> Get(std::string_view key, uint64_t off, uint64_t len) override {
    std::string out;
    NX_TRY(GetInto(key, off, len, &out));
    return out;
  }

  // Reads into `*out` in place: a buffer that already has the size (a recycled block) is not
  // cleared or zeroed first.
  Status GetInto(std::string_view key, uint64_t off, uint64_t len, std::string* out) override {
    NX_TRY(Check(key));
    int fd = open(Path(key).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return OsError(errno, "get", key);
    struct stat st;
    if (fstat(fd, &st) != 0) {
      int err = errno;
      close(fd);
      return OsError(err, "get", key);
    }
    uint64_t size = static_cast<uint64_t>(st.st_size);
    const size_t n = off < size ? static_cast<size_t>(std::min<uint64_t>(len, size - off)) : 0;
    if (out->size() > n) {
      out->resize(n);
    } else if (out->size() < n) {
      ReserveLarge(out, n);
      out->resize(n);
    }
    size_t done = 0;
    while (done < n) {
      ssize_t got = pread(fd, out->data() + done, n - done, static_cast<off_t>(off + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        int err = got < 0 ? errno : EIO;
        close(fd);
        return OsError(err, "get", key);
      }
      done += static_cast<size_t>(got);
    }
    close(fd);
    return Status::OK();
  }

  Status ReadTo(std::string_view key, uint64_t off, size_t len, char* out) override {
    NX_TRY(Check(key));
    int fd = open(Path(key).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return OsError(errno, "get", key);
    size_t done = 0;
    while (done < len) {
      ssize_t got = pread(fd, out + done, len - done, static_cast<off_t>(off + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        int err = errno;
        close(fd);
        if (got == 0) {
          return Status::IOError("get " + std::string(key) + ": the object ends before byte " +
                                 std::to_string(off + len));
        }
        return OsError(err, "get", key);
      }
      done += static_cast<size_t>(got);
    }
    close(fd);
    return Status::OK();
  }

  bool ReadsLocally() const override { return true; }

  Result<MappedRange> MapRange(std::string_view key, uint64_t off, size_t len) override {
    NX_TRY(Check(key));
    NX_ASSIGN_OR_RETURN(std::shared_ptr<const Mapping> m, maps_.Get(key, Path(key)));
    if (off > m->size || len > m->size - off) {
      return Err(EIO, "get " + std::string(key) + ": the object ends before byte " +
                          std::to_string(off + len));
    }
    return MappedRange{std::string_view(m->data + off, len), std::move(m)};
  }

  // Has the kernel read the range ahead, unless the object's first page is in the page cache
  // already: an object written or read lately is taken to be cached whole, since asking the
  // kernel costs a lookup of every page of the range (a tenth of the CPU of reading hot data).
  void WillRead(std::string_view key, uint64_t off, uint64_t len) override {
    if (!Check(key).ok()) return;
    auto m = maps_.Get(key, Path(key));
    if (!m || (*m)->size == 0 || off >= (*m)->size) return;
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    unsigned char resident = 0;
    char* base = const_cast<char*>((*m)->data);
    if (mincore(base, page, &resident) == 0 && (resident & 1)) return;
    const uint64_t from = off / page * page;
    const uint64_t n =
        std::min<uint64_t>(len == UINT64_MAX ? (*m)->size : len + (off - from), (*m)->size - from);
    (void)madvise(base + from, n, MADV_WILLNEED);
  }

  Result<ObjectInfo> Head(std::string_view key) override {
    NX_TRY(Check(key));
    struct stat st;
    if (stat(Path(key).c_str(), &st) != 0) return Err(OsError(errno, "head", key));
    if (!S_ISREG(st.st_mode)) return Err(ENOENT, "head " + std::string(key) + ": not an object");
    return ObjectInfo{std::string(key), static_cast<uint64_t>(st.st_size),
                      st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
  }

  Status Delete(std::string_view key) override {
    NX_TRY(Check(key));
    maps_.Forget(key);
    if (unlink(Path(key).c_str()) != 0 && errno != ENOENT) return OsError(errno, "delete", key);
    return Status::OK();
  }

  Result<ListResult> List(std::string_view prefix, std::string_view marker, size_t limit) override {
    ListResult out;
    bool full = false;
    NX_TRY(Walk(dir_, "", prefix, marker, limit, &out, &full));
    if (full && !out.objects.empty()) out.next_marker = out.objects.back().key;
    return out;
  }

  // Walks the tree under `prefix` for temporary files (a crash between a Put's write and its
  // rename). Only old ones are taken: a younger one may be a Put under way, here or in another
  // process.
  Status SweepLeftovers(std::string_view prefix, int64_t older_than_ns, bool remove,
                        Leftovers* found) override {
    // Keys are paths: the prefix's directory part bounds the walk, its last part filters names.
    const std::string root = dir_ + "/" + std::string(prefix.substr(0, prefix.rfind('/') + 1));
    std::error_code ec;
    auto it = std::filesystem::recursive_directory_iterator(
        root, std::filesystem::directory_options::skip_permission_denied, ec);
    if (ec) {
      if (ec == std::errc::no_such_file_or_directory) return Status::OK();
      return OsError(ec.value(), "sweep", root);
    }
    for (auto end = std::filesystem::recursive_directory_iterator(); it != end; it.increment(ec)) {
      if (ec) return OsError(ec.value(), "sweep", root);
      const std::string rel = it->path().string().substr(dir_.size() + 1);
      if (rel == SpareFiles::kDirName) {  // spare files: SpareFiles removes its own orphans
        it.disable_recursion_pending();
        continue;
      }
      if (rel.compare(0, prefix.size(), prefix) != 0 &&
          std::string_view(prefix).substr(0, rel.size()) != rel) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      const std::string name = it->path().filename().string();
      if (name.compare(0, kTmpPrefix.size(), kTmpPrefix) != 0) continue;
      struct stat st;
      if (lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec >= older_than_ns) continue;
      found->count++;
      found->bytes += static_cast<uint64_t>(st.st_size);
      if (!remove) continue;
      if (unlink(it->path().c_str()) == 0) {
        found->removed++;
      } else if (errno != ENOENT) {
        return OsError(errno, "sweep", it->path().string());
      }
    }
    return Status::OK();
  }

  std::string Name() const override { return "file://" + dir_; }

 private:
  struct TempFile {
    int fd = -1;
    std::string path, parent;
  };

  // Creates the temporary file of a Put of `key` in the key's directory (made if missing).
  Status OpenTemp(std::string_view key, TempFile* t, int mode) {
    const std::string path = Path(key);
    t->parent = path.substr(0, path.rfind('/'));
    if (spares_.Take(&t->fd, &t->path)) return Status::OK();  // opened read-write
    t->path = t->parent + "/" + std::string(kTmpPrefix) + std::to_string(getpid()) + "-" +
              std::to_string(seq_.fetch_add(1));
    t->fd = open(t->path.c_str(), mode | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (t->fd < 0 && errno == ENOENT) {
      std::error_code ec;
      std::filesystem::create_directories(t->parent, ec);
      if (ec) return OsError(ec.value(), "put", key);
      t->fd = open(t->path.c_str(), mode | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (t->fd < 0) return OsError(errno, "put", key);
    return Status::OK();
  }

  // Renames the temporary file over `key`, making the key's directory when it is missing (a
  // spare file was created elsewhere).
  Status MoveInto(const TempFile& t, std::string_view key) {
    const std::string path = Path(key);
    if (rename(t.path.c_str(), path.c_str()) == 0) return Status::OK();
    if (errno == ENOENT && access(t.path.c_str(), F_OK) == 0) {
      std::error_code ec;
      std::filesystem::create_directories(t.parent, ec);
      if (ec) return OsError(ec.value(), "put (mkdir)", key);
      if (rename(t.path.c_str(), path.c_str()) == 0) return Status::OK();
    }
    return OsError(errno, "put (rename)", key);
  }

  // Closes the temporary file and, when `s` is OK, moves it over `key` (fsyncing with
  // sync_puts); removes it otherwise.
  Status Finish(std::string_view key, TempFile* t, Status s) {
    if (s.ok() && options_.sync_puts && fsync(t->fd) != 0) s = OsError(errno, "put (fsync)", key);
    if (close(t->fd) != 0 && s.ok()) s = OsError(errno, "put (close)", key);
    t->fd = -1;
    if (s.ok()) s = MoveInto(*t, key);
    if (s.ok()) maps_.Forget(key);
    if (!s.ok()) {
      unlink(t->path.c_str());
      return s;
    }
    if (options_.sync_puts) return SyncDir(t->parent, key);
    return Status::OK();
  }

  class Writer final : public ObjectWriter {
   public:
    Writer(FileStore* store, std::string key, uint64_t size)
        : store_(store), key_(std::move(key)), size_(size) {}
    ~Writer() override {
      if (temp.fd >= 0) {
        close(temp.fd);
        unlink(temp.path.c_str());
      }
    }
    Status Append(std::string_view data) override {
      if (temp.fd < 0 || sealed_)
        return Status::InvalidArgument("put " + key_ + ": writer is done");
      if (written_ + data.size() > size_) {
        return Status::InvalidArgument("put " + key_ + ": more bytes than announced");
      }
      std::string_view parts[] = {data};
      NX_TRY(WriteAll(temp.fd, parts, key_));
      written_ += data.size();
      return Status::OK();
    }
    Status WriteAt(uint64_t off, std::string_view data) override {
      if (temp.fd < 0 || sealed_ || off + data.size() > written_) {
        return Status::InvalidArgument("put " + key_ + ": write outside what was appended");
      }
      while (!data.empty()) {
        ssize_t n = pwrite(temp.fd, data.data(), data.size(), static_cast<off_t>(off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return OsError(n < 0 ? errno : EIO, "put (pwrite)", key_);
        data.remove_prefix(static_cast<size_t>(n));
        off += static_cast<uint64_t>(n);
      }
      return Status::OK();
    }
    Status ReadAt(uint64_t off, size_t len, char* out) override {
      if (temp.fd < 0 || off + len > written_) {
        return Status::InvalidArgument("put " + key_ + ": read outside what was appended");
      }
      while (len > 0) {
        ssize_t n = pread(temp.fd, out, len, static_cast<off_t>(off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return OsError(n < 0 ? errno : EIO, "put (read back)", key_);
        out += n;
        len -= static_cast<size_t>(n);
        off += static_cast<uint64_t>(n);
      }
      return Status::OK();
    }
    uint64_t size() const override { return written_; }
    // On failure the temporary file stays (readable with ReadAt) until the writer is dropped.
    Status Commit() override {
      if (temp.fd < 0 || sealed_)
        return Status::InvalidArgument("put " + key_ + ": writer is done");
      sealed_ = true;
      if (written_ != size_) {
        return Status::InvalidArgument("put " + key_ + ": " + std::to_string(written_) +
                                       " bytes written of " + std::to_string(size_));
      }
      if (store_->options_.sync_puts && fsync(temp.fd) != 0) {
        return OsError(errno, "put (fsync)", key_);
      }
      NX_TRY(store_->MoveInto(temp, key_));
      store_->maps_.Forget(key_);
      close(temp.fd);
      temp.fd = -1;
      if (store_->options_.sync_puts) return SyncDir(temp.parent, key_);
      return Status::OK();
    }

    TempFile temp;

   private:
    FileStore* store_;
    const std::string key_;
    const uint64_t size_;
    uint64_t written_ = 0;
    bool sealed_ = false;  // Commit was called
  };

  std::string Path(std::string_view key) const { return dir_ + "/" + std::string(key); }

  Status Check(std::string_view key) const {
    NX_TRY(ValidateKey(key));
    if (key.find(kTmpPrefix) != std::string_view::npos) {
      return Status::InvalidArgument("object key '" + std::string(key) + "' is reserved");
    }
    return Status::OK();
  }

  // Writes all of `parts` in order, resuming after short writes and EINTR.
  static Status WriteAll(int fd, std::span<const std::string_view> parts, std::string_view key) {
    constexpr size_t kMaxIov = 64;
    size_t first = 0, skip = 0;  // the next byte to write: part `first`, offset `skip`
    while (first < parts.size()) {
      if (parts[first].size() == skip) {
        ++first;
        skip = 0;
        continue;
      }
      iovec iov[kMaxIov];
      int count = 0;
      for (size_t i = first; i < parts.size() && count < int(kMaxIov); ++i) {
        const size_t from = i == first ? skip : 0;
        if (parts[i].size() == from) continue;
        iov[count].iov_base = const_cast<char*>(parts[i].data() + from);
        iov[count].iov_len = parts[i].size() - from;
        ++count;
      }
      ssize_t n = writev(fd, iov, count);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return OsError(errno, "put", key);
      if (n == 0) return OsError(EIO, "put (short write)", key);
      size_t left = static_cast<size_t>(n);
      while (left > 0) {
        const size_t in_part = parts[first].size() - skip;
        if (left < in_part) {
          skip += left;
          break;
        }
        left -= in_part;
        ++first;
        skip = 0;
      }
    }
    return Status::OK();
  }

  static Status SyncDir(const std::string& dir, std::string_view key) {
    int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return OsError(errno, "put (open dir)", key);
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    return rc == 0 ? Status::OK() : OsError(err, "put (fsync dir)", key);
  }

  // Visits the objects under `dir` (whose keys start with `base`) in key order. Entries sort by
  // name with a '/' appended to directories, which is exactly the order of the full keys.
  // Subtrees that cannot hold keys matching `prefix` after `marker` are not read.
  Status Walk(const std::string& dir, const std::string& base, std::string_view prefix,
              std::string_view marker, size_t limit, ListResult* out, bool* full) {
    DIR* d = opendir(dir.c_str());
    if (!d) {
      if (errno == ENOENT || errno == ENOTDIR) return Status::OK();
      return OsError(errno, "list", base.empty() ? "/" : base);
    }
    std::vector<std::pair<std::string, bool>> entries;  // key-relative name, is_dir
    while (dirent* e = readdir(d)) {
      std::string_view name = e->d_name;
      if (name == "." || name == ".." || name.substr(0, kTmpPrefix.size()) == kTmpPrefix) continue;
      bool is_dir = e->d_type == DT_DIR;
      if (e->d_type == DT_UNKNOWN) {
        struct stat st;
        if (stat((dir + "/" + std::string(name)).c_str(), &st) != 0) continue;
        is_dir = S_ISDIR(st.st_mode);
      }
      entries.emplace_back(std::string(name) + (is_dir ? "/" : ""), is_dir);
    }
    closedir(d);
    std::sort(entries.begin(), entries.end());
    for (const auto& [name, is_dir] : entries) {
      if (*full) return Status::OK();
      std::string key = base + name;  // ends with '/' for directories
      if (is_dir) {
        // The subtree's keys all start with `key`: skip it when no key there can match.
        bool prefix_ok = key.compare(0, std::min(key.size(), prefix.size()), prefix, 0,
                                     std::min(key.size(), prefix.size())) == 0;
        bool after_marker = marker.empty() || key > marker || marker.substr(0, key.size()) == key;
        if (!prefix_ok || !after_marker) continue;
        std::string sub = dir + "/" + name.substr(0, name.size() - 1);
        NX_TRY(Walk(sub, key, prefix, marker, limit, out, full));
        continue;
      }
      if (key.compare(0, prefix.size(), prefix) != 0) continue;
      if (!marker.empty() && key <= marker) continue;
      if (limit && out->objects.size() >= limit) {
        *full = true;
        return Status::OK();
      }
      struct stat st;
      if (stat((dir + "/" + name).c_str(), &st) != 0) continue;  // deleted meanwhile
      out->objects.push_back(ObjectInfo{key, static_cast<uint64_t>(st.st_size),
                                        st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec});
    }
    return Status::OK();
  }

  std::string dir_;
  StoreOptions options_;
  std::atomic<uint64_t> seq_{0};
  // Objects mapped by MapRange. 1,024 blocks of 4 MiB are 4 GiB of address space, none of it
  // memory of its own: the pages are the page cache's.
  MappedFiles maps_{1024};
  SpareFiles spares_{dir_, 4};  // files for Puts and writers, created ahead
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> NewFileStore(const std::string& dir,
                                                  const StoreOptions& options) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  std::error_code ec;
  std::filesystem::create_directories(d, ec);
  if (ec) {
    return Err(ec.value(), "file store: cannot create directory '" + d + "': " + ec.message());
  }
  if (!std::filesystem::is_directory(d, ec)) {
    return Err(ENOTDIR, "file store: '" + d + "' is not a directory");
  }
  if (access(d.c_str(), W_OK | X_OK) != 0) {
    return Err(errno, "file store: directory '" + d + "' is not writable: " + std::strerror(errno));
  }
  return std::unique_ptr<ObjectStore>(std::make_unique<FileStore>(d, options));
}

}  // namespace nexus::object
