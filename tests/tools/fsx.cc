// nexus-fsx: a random file-system exerciser in the manner of xfstests' fsx.
//
// Applies a seeded random sequence of operations to one file through real syscalls — write,
// read, mmap read, mmap write, truncate, fallocate (plain, keep-size, punch hole, zero range),
// copy_file_range, fsync, close and reopen — and checks every read against an in-memory model of
// the file. Exits 0 after N operations without a mismatch; on a mismatch prints the operation
// log tail and the first differing offset and exits 1.
//
// Usage: nexus-fsx [-N ops] [-S seed] [-l maxlen] [-o maxop] [--no-mmap] [--no-fallocate] FILE
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

namespace {

struct Options {
  long ops = 10000;
  uint64_t seed = 1;
  size_t max_len = 1 << 20;
  size_t max_op = 64 << 10;
  bool mmap = true;
  bool fallocate = true;
  bool copy_range = true;
  std::string path;
};

class Exerciser {
 public:
  explicit Exerciser(const Options& o) : o_(o), rng_(o.seed) {}

  int Run() {
    fd_ = open(o_.path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd_ < 0) return Fatal("open");
    std::string tmp = o_.path + ".fsxsrc";
    src_fd_ = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (src_fd_ < 0) return Fatal("open source file");
    unlink(tmp.c_str());
    for (long i = 0; i < o_.ops; ++i) {
      op_ = i;
      if (!Step()) return 1;
    }
    if (!CheckWhole()) return 1;
    close(fd_);
    close(src_fd_);
    std::printf("nexus-fsx: %ld operations passed (seed %llu, file size %zu)\n", o_.ops,
                static_cast<unsigned long long>(o_.seed), model_.size());
    return 0;
  }

 private:
  uint64_t Rand(uint64_t n) { return n ? rng_() % n : 0; }

  void Log(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_.push_back(std::to_string(op_) + ": " + buf);
    if (log_.size() > 40) log_.pop_front();
  }

  int Fatal(const char* what) {
    std::fprintf(stderr, "nexus-fsx: op %ld: %s: %s\n", op_, what, std::strerror(errno));
    DumpLog();
    return 1;
  }

  void DumpLog() {
    std::fprintf(stderr, "last operations:\n");
    for (const auto& l : log_) std::fprintf(stderr, "  %s\n", l.c_str());
  }

  bool Compare(uint64_t off, const std::string& got, const char* how) {
    for (size_t i = 0; i < got.size(); ++i) {
      char want = off + i < model_.size() ? model_[off + i] : 0;
      if (got[i] != want) {
        std::fprintf(stderr,
                     "nexus-fsx: op %ld: %s mismatch at offset %llu: got 0x%02x want 0x%02x "
                     "(read at %llu, %zu bytes, file size %zu)\n",
                     op_, how, static_cast<unsigned long long>(off + i),
                     static_cast<unsigned char>(got[i]), static_cast<unsigned char>(want),
                     static_cast<unsigned long long>(off), got.size(), model_.size());
        DumpLog();
        return false;
      }
    }
    return true;
  }

  std::string Pattern(size_t n) {
    std::string s(n, '\0');
    uint8_t base = static_cast<uint8_t>(Rand(256));
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(base + i * 7 + (op_ & 0xff));
    return s;
  }

  bool Step() {
    switch (Rand(o_.mmap ? 13 : 11)) {
      case 0:
      case 1:
      case 2:
        return Write();
      case 3:
      case 4:
        return Read();
      case 5:
        return Truncate();
      case 6:
        return o_.fallocate ? Fallocate() : Read();
      case 7:
        return o_.copy_range ? CopyRange() : Write();
      case 8:
        return Fsync();
      case 9:
        return Reopen();
      case 10:
        return CheckSize();
      case 11:
        return MapRead();
      default:
        return MapWrite();
    }
  }

  bool Write() {
    uint64_t off = Rand(o_.max_len);
    size_t len = 1 + Rand(o_.max_op);
    if (off + len > o_.max_len) len = o_.max_len - off;
    if (len == 0) return true;
    std::string data = Pattern(len);
    Log("write %llu +%zu", static_cast<unsigned long long>(off), len);
    if (pwrite(fd_, data.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) {
      return !Fatal("pwrite");
    }
    if (model_.size() < off + len) model_.resize(off + len, '\0');
    model_.replace(off, len, data);
    return true;
  }

  bool Read() {
    if (model_.empty()) return true;
    uint64_t off = Rand(model_.size());
    size_t len = 1 + Rand(o_.max_op);
    Log("read %llu +%zu", static_cast<unsigned long long>(off), len);
    std::string got(len, '\0');
    ssize_t n = pread(fd_, got.data(), len, static_cast<off_t>(off));
    if (n < 0) return !Fatal("pread");
    size_t want = std::min<uint64_t>(len, model_.size() - off);
    if (static_cast<size_t>(n) != want) {
      std::fprintf(stderr, "nexus-fsx: op %ld: short read %zd of %zu at %llu (size %zu)\n", op_, n,
                   want, static_cast<unsigned long long>(off), model_.size());
      DumpLog();
      return false;
    }
    got.resize(static_cast<size_t>(n));
    return Compare(off, got, "read");
  }

  bool MapRead() {
    if (model_.empty()) return true;
    uint64_t off = Rand(model_.size());
    size_t len = std::min<uint64_t>(1 + Rand(o_.max_op), model_.size() - off);
    Log("mapread %llu +%zu", static_cast<unsigned long long>(off), len);
    long page = sysconf(_SC_PAGESIZE);
    uint64_t base = off & ~static_cast<uint64_t>(page - 1);
    size_t maplen = len + (off - base);
    void* p = mmap(nullptr, maplen, PROT_READ, MAP_SHARED, fd_, static_cast<off_t>(base));
    if (p == MAP_FAILED) return !Fatal("mmap read");
    std::string got(static_cast<char*>(p) + (off - base), len);
    munmap(p, maplen);
    return Compare(off, got, "mapread");
  }

  bool MapWrite() {
    // mmap cannot grow a file: extend with ftruncate first, as fsx does.
    uint64_t off = Rand(o_.max_len);
    size_t len = 1 + Rand(o_.max_op);
    if (off + len > o_.max_len) len = o_.max_len - off;
    if (len == 0) return true;
    Log("mapwrite %llu +%zu", static_cast<unsigned long long>(off), len);
    if (off + len > model_.size()) {
      if (ftruncate(fd_, static_cast<off_t>(off + len)) != 0) return !Fatal("ftruncate");
      model_.resize(off + len, '\0');
    }
    long page = sysconf(_SC_PAGESIZE);
    uint64_t base = off & ~static_cast<uint64_t>(page - 1);
    size_t maplen = len + (off - base);
    void* p =
        mmap(nullptr, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, static_cast<off_t>(base));
    if (p == MAP_FAILED) return !Fatal("mmap write");
    std::string data = Pattern(len);
    std::memcpy(static_cast<char*>(p) + (off - base), data.data(), len);
    if (msync(p, maplen, MS_SYNC) != 0) {
      munmap(p, maplen);
      return !Fatal("msync");
    }
    munmap(p, maplen);
    model_.replace(off, len, data);
    return true;
  }

  bool Truncate() {
    uint64_t len = Rand(o_.max_len + 1);
    Log("truncate %llu (from %zu)", static_cast<unsigned long long>(len), model_.size());
    if (ftruncate(fd_, static_cast<off_t>(len)) != 0) return !Fatal("ftruncate");
    model_.resize(len, '\0');
    return true;
  }

  bool Fallocate() {
    uint64_t off = Rand(o_.max_len);
    uint64_t len = 1 + Rand(o_.max_op);
    if (off + len > o_.max_len) len = o_.max_len - off;
    if (len == 0) return true;
    static const int kModes[] = {0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                 FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE};
    int mode = kModes[Rand(5)];
    Log("fallocate mode %d %llu +%llu", mode, static_cast<unsigned long long>(off),
        static_cast<unsigned long long>(len));
    if (fallocate(fd_, mode, static_cast<off_t>(off), static_cast<off_t>(len)) != 0) {
      if (errno == EOPNOTSUPP) return true;
      return !Fatal("fallocate");
    }
    bool keep = mode & FALLOC_FL_KEEP_SIZE;
    if (!keep && off + len > model_.size()) model_.resize(off + len, '\0');
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
      uint64_t end = std::min<uint64_t>(off + len, model_.size());
      if (off < end) std::memset(model_.data() + off, 0, end - off);
    }
    return true;
  }

  bool CopyRange() {
    // Fill the side file with fresh data and copy a piece of it into the file under test.
    size_t len = 1 + Rand(o_.max_op);
    uint64_t dst = Rand(o_.max_len);
    if (dst + len > o_.max_len) len = o_.max_len - dst;
    if (len == 0) return true;
    std::string data = Pattern(len);
    if (pwrite(src_fd_, data.data(), len, 0) != static_cast<ssize_t>(len))
      return !Fatal("pwrite src");
    Log("copy_range 0 -> %llu +%zu", static_cast<unsigned long long>(dst), len);
    loff_t in = 0, out = static_cast<loff_t>(dst);
    size_t done = 0;
    while (done < len) {
      ssize_t n = copy_file_range(src_fd_, &in, fd_, &out, len - done, 0);
      if (n < 0) {
        if (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS) {
          o_.copy_range = false;
          return true;
        }
        return !Fatal("copy_file_range");
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    if (done != len) {
      std::fprintf(stderr, "nexus-fsx: op %ld: copy_file_range copied %zu of %zu\n", op_, done,
                   len);
      DumpLog();
      return false;
    }
    if (model_.size() < dst + len) model_.resize(dst + len, '\0');
    model_.replace(dst, len, data);
    return true;
  }

  bool Fsync() {
    Log("fsync");
    if (fsync(fd_) != 0) return !Fatal("fsync");
    return true;
  }

  bool Reopen() {
    Log("close/open");
    if (close(fd_) != 0) return !Fatal("close");
    fd_ = open(o_.path.c_str(), O_RDWR);
    if (fd_ < 0) return !Fatal("reopen");
    return CheckSize();
  }

  bool CheckSize() {
    struct stat st;
    if (fstat(fd_, &st) != 0) return !Fatal("fstat");
    if (static_cast<uint64_t>(st.st_size) != model_.size()) {
      std::fprintf(stderr, "nexus-fsx: op %ld: size %lld, want %zu\n", op_,
                   static_cast<long long>(st.st_size), model_.size());
      DumpLog();
      return false;
    }
    return true;
  }

  bool CheckWhole() {
    if (!CheckSize()) return false;
    std::string got(model_.size(), '\0');
    size_t done = 0;
    while (done < got.size()) {
      ssize_t n = pread(fd_, got.data() + done, got.size() - done, static_cast<off_t>(done));
      if (n <= 0) return !Fatal("final read");
      done += static_cast<size_t>(n);
    }
    return Compare(0, got, "final read");
  }

  Options o_;
  std::mt19937_64 rng_;
  std::string model_;
  std::deque<std::string> log_;
  int fd_ = -1, src_fd_ = -1;
  long op_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "nexus-fsx: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-N")
      o.ops = std::atol(next());
    else if (a == "-S")
      o.seed = std::strtoull(next(), nullptr, 10);
    else if (a == "-l")
      o.max_len = std::strtoull(next(), nullptr, 10);
    else if (a == "-o")
      o.max_op = std::strtoull(next(), nullptr, 10);
    else if (a == "--no-mmap")
      o.mmap = false;
    else if (a == "--no-fallocate")
      o.fallocate = false;
    else if (a == "--no-copy-range")
      o.copy_range = false;
    else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr,
                   "usage: nexus-fsx [-N ops] [-S seed] [-l maxlen] [-o maxop] "
                   "[--no-mmap] [--no-fallocate] [--no-copy-range] FILE\n");
      return 2;
    } else
      o.path = a;
  }
  if (o.path.empty() || o.ops <= 0 || o.max_len == 0 || o.max_op == 0) {
    std::fprintf(stderr, "nexus-fsx: a FILE and positive -N, -l, -o are required\n");
    return 2;
  }
  return Exerciser(o).Run();
}
