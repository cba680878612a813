// The JSON encoding of a dump (docs/dump.md): written by hand, one record per line, and read
// back with nlohmann's SAX parser so that neither side ever holds more than one record.
#include <cinttypes>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <streambuf>

#include "meta/dump_internal.h"

namespace nexus::meta::dump {
namespace {

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\r':
        *out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          *out += buf;
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

// Bytes: a JSON string when they are valid UTF-8, else {"base64":"..."}.
void AppendBytes(std::string* out, std::string_view s) {
  if (ValidUtf8(s)) return AppendJsonString(out, s);
  *out += "{\"base64\":\"";
  *out += Base64Encode(s);
  *out += "\"}";
}

void AppendU(std::string* out, uint64_t v) { *out += std::to_string(v); }
void AppendI(std::string* out, int64_t v) { *out += std::to_string(v); }

class JsonWriter : public Writer {
 public:
  JsonWriter(std::FILE* out, bool secrets) : out_(out) {
    buf_ = "{\"format\":\"";
    buf_ += kJsonFormatName;
    buf_ += "\",\"version\":" + std::to_string(kDumpVersion);
    buf_ += secrets ? ",\"secrets\":true" : ",\"secrets\":false";
  }
  uint64_t bytes() const override { return written_ + buf_.size(); }

  Status Setting(const std::string& json) override {
    buf_ += ",\n\"setting\":";
    buf_ += json;  // Format::ToJson: compact, already valid JSON
    return Status::OK();
  }
  Status Counters(const std::vector<std::pair<std::string, uint64_t>>& counters) override {
    buf_ += ",\n\"counters\":{";
    bool first = true;
    for (const auto& [name, v] : counters) {
      if (!first) buf_ += ',';
      first = false;
      AppendBytes(&buf_, name);
      buf_ += ':';
      AppendU(&buf_, v);
    }
    buf_ += '}';
    return Status::OK();
  }
  Status InodeBegin(Ino ino, const std::optional<Attr>& attr) override {
    NX_TRY(Section(1));
    buf_ += first_in_section_ ? "\n" : ",\n";
    first_in_section_ = false;
    buf_ += "{\"inode\":";
    AppendU(&buf_, ino);
    if (attr) {
      const Attr& a = *attr;
      char mode[16];
      std::snprintf(mode, sizeof(mode), "%04o", a.mode);
      buf_ += ",\"attr\":{\"type\":\"";
      buf_ += FileTypeName(a.type);
      buf_ += "\",\"mode\":\"";
      buf_ += mode;
      buf_ += "\",\"uid\":";
      AppendU(&buf_, a.uid);
      buf_ += ",\"gid\":";
      AppendU(&buf_, a.gid);
      buf_ += ",\"nlink\":";
      AppendU(&buf_, a.nlink);
      buf_ += ",\"length\":";
      AppendU(&buf_, a.length);
      buf_ += ",\"rdev\":";
      AppendU(&buf_, a.rdev);
      buf_ += ",\"atime\":";
      AppendI(&buf_, a.atime);
      buf_ += ",\"mtime\":";
      AppendI(&buf_, a.mtime);
      buf_ += ",\"ctime\":";
      AppendI(&buf_, a.ctime);
      buf_ += ",\"parent\":";
      AppendU(&buf_, a.parent);
      buf_ += ",\"flags\":";
      AppendU(&buf_, a.flags);
      buf_ += '}';
    }
    sub_.clear();
    return Flush();
  }
  Status Chunk(Ino, uint32_t index, const std::vector<Slice>& slices) override {
    Sub("chunks", true);
    buf_ += '[';
    AppendU(&buf_, index);
    buf_ += ",[";
    for (size_t i = 0; i < slices.size(); ++i) {
      const Slice& s = slices[i];
      buf_ += i ? ",[" : "[";
      AppendU(&buf_, s.pos);
      buf_ += ',';
      AppendU(&buf_, s.id);
      buf_ += ',';
      AppendU(&buf_, s.size);
      buf_ += ',';
      AppendU(&buf_, s.off);
      buf_ += ',';
      AppendU(&buf_, s.len);
      buf_ += ']';
    }
    buf_ += "]]";
    return Flush();
  }
  Status Entry(Ino, std::string_view name, FileType type, Ino child) override {
    Sub("entries", true);
    buf_ += '[';
    AppendBytes(&buf_, name);
    buf_ += ',';
    AppendU(&buf_, child);
    buf_ += ",\"";
    buf_ += FileTypeName(type);
    buf_ += "\"]";
    return Flush();
  }
  Status Parent(Ino, Ino parent, uint32_t count) override {
    Sub("parents", false);
    buf_ += '[';
    AppendU(&buf_, parent);
    buf_ += ',';
    AppendU(&buf_, count);
    buf_ += ']';
    return Status::OK();
  }
  Status Symlink(Ino, std::string_view target) override {
    CloseSub();
    buf_ += ",\"symlink\":";
    AppendBytes(&buf_, target);
    return Status::OK();
  }
  Status Xattr(Ino, std::string_view name, std::string_view value) override {
    Sub("xattrs", false);
    buf_ += '[';
    AppendBytes(&buf_, name);
    buf_ += ',';
    AppendBytes(&buf_, value);
    buf_ += ']';
    return Flush();
  }
  Status InodeEnd(Ino) override {
    CloseSub();
    buf_ += '}';
    return Flush();
  }
  Status DeletedFile(Ino ino, uint64_t length) override { return Pair(2, ino, length); }
  Status DeletedSlice(uint64_t id, uint32_t size) override { return Pair(3, id, size); }
  Status SliceRef(uint64_t id, uint32_t size, uint32_t refs) override {
    NX_TRY(Section(4));
    Item();
    buf_ += '[';
    AppendU(&buf_, id);
    buf_ += ',';
    AppendU(&buf_, size);
    buf_ += ',';
    AppendU(&buf_, refs);
    buf_ += ']';
    return Flush();
  }
  Status End() override {
    NX_TRY(Section(5));
    buf_ += "}\n";
    return Flush(true);
  }

 private:
  static constexpr const char* kSections[] = {"", "inodes", "deleted_files", "deleted_slices",
                                              "slice_refs"};

  // Opens the top-level arrays in order, empty ones included.
  Status Section(int s) {
    while (section_ < s) {
      if (section_ >= 1) buf_ += first_in_section_ ? "]" : "\n]";
      ++section_;
      if (section_ <= 4) {
        buf_ += ",\n\"";
        buf_ += kSections[section_];
        buf_ += "\":[";
        first_in_section_ = true;
      }
    }
    return Status::OK();
  }
  void Item() {
    buf_ += first_in_section_ ? "\n" : ",\n";
    first_in_section_ = false;
  }
  Status Pair(int section, uint64_t a, uint64_t b) {
    NX_TRY(Section(section));
    Item();
    buf_ += '[';
    AppendU(&buf_, a);
    buf_ += ',';
    AppendU(&buf_, b);
    buf_ += ']';
    return Flush();
  }
  // Inside an inode: opens array `name` (closing the previous one); `lines`: one element a line.
  void Sub(const char* name, bool lines) {
    if (sub_ != name) {
      CloseSub();
      sub_ = name;
      sub_lines_ = lines;
      buf_ += ",\"";
      buf_ += name;
      buf_ += "\":[";
      sub_first_ = true;
    }
    if (!sub_first_) buf_ += ',';
    if (sub_lines_) buf_ += '\n';
    sub_first_ = false;
  }
  void CloseSub() {
    if (sub_.empty()) return;
    buf_ += ']';
    sub_.clear();
  }
  Status Flush(bool force = false) {
    if (!force && buf_.size() < (1 << 16)) return Status::OK();
    if (!buf_.empty() && std::fwrite(buf_.data(), 1, buf_.size(), out_) != buf_.size()) {
      return Status(errno ? errno : EIO, std::string("write failed: ") + std::strerror(errno));
    }
    written_ += buf_.size();
    buf_.clear();
    return Status::OK();
  }

  std::FILE* out_;
  std::string buf_;
  uint64_t written_ = 0;
  int section_ = 0;
  bool first_in_section_ = true;
  std::string sub_;
  bool sub_lines_ = false, sub_first_ = true;
};

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

// The bytes already read to detect the encoding, then the rest of the file.
class HeadFileBuf : public std::streambuf {
 public:
  HeadFileBuf(std::FILE* in, std::string_view head) : in_(in), buf_(1 << 16) {
    std::memcpy(buf_.data(), head.data(), head.size());
    setg(buf_.data(), buf_.data(), buf_.data() + head.size());
  }
  bool failed() const { return failed_; }

 protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    size_t n = std::fread(buf_.data(), 1, buf_.size(), in_);
    if (n == 0) {
      failed_ = std::ferror(in_) != 0;
      return traits_type::eof();
    }
    setg(buf_.data(), buf_.data(), buf_.data() + n);
    return traits_type::to_int_type(*gptr());
  }

 private:
  std::FILE* in_;
  std::vector<char> buf_;
  bool failed_ = false;
};

using json = nlohmann::json;

Status BadJson(const std::string& msg) { return Status::Corruption("invalid dump: " + msg); }

bool GetU64(const json& j, uint64_t* v) {
  if (!j.is_number_unsigned()) return false;
  *v = j.get<uint64_t>();
  return true;
}
template <typename T>
bool GetUInt(const json& j, T* v) {
  uint64_t u;
  if (!GetU64(j, &u) || u > std::numeric_limits<T>::max()) return false;
  *v = static_cast<T>(u);
  return true;
}
bool GetI64(const json& j, int64_t* v) {
  if (!j.is_number_integer()) return false;
  if (j.is_number_unsigned() && j.get<uint64_t>() > uint64_t(INT64_MAX)) return false;
  *v = j.get<int64_t>();
  return true;
}
bool GetBytes(const json& j, std::string* out) {
  if (j.is_string()) {
    *out = j.get<std::string>();
    return true;
  }
  if (j.is_object() && j.size() == 1 && j.contains("base64") && j["base64"].is_string()) {
    return Base64Decode(j["base64"].get<std::string>(), out);
  }
  return false;
}

Status ParseAttr(const json& j, Attr* a) {
  if (!j.is_object()) return BadJson("attr is not an object");
  auto field = [&](const char* name) -> const json& {
    static const json kNull;
    auto it = j.find(name);
    return it == j.end() ? kNull : *it;
  };
  const json& t = field("type");
  const json& m = field("mode");
  if (!t.is_string() || !ParseFileType(t.get<std::string>(), &a->type)) {
    return BadJson("attr has an invalid type");
  }
  if (!m.is_string()) return BadJson("attr has an invalid mode");
  std::string ms = m.get<std::string>();
  char* end = nullptr;
  unsigned long mode = std::strtoul(ms.c_str(), &end, 8);
  if (ms.empty() || *end != '\0' || mode > 07777) return BadJson("attr has an invalid mode");
  a->mode = static_cast<uint32_t>(mode);
  if (!GetUInt(field("uid"), &a->uid) || !GetUInt(field("gid"), &a->gid) ||
      !GetUInt(field("nlink"), &a->nlink) || !GetU64(field("length"), &a->length) ||
      !GetUInt(field("rdev"), &a->rdev) || !GetI64(field("atime"), &a->atime) ||
      !GetI64(field("mtime"), &a->mtime) || !GetI64(field("ctime"), &a->ctime) ||
      !GetU64(field("parent"), &a->parent) || !GetUInt(field("flags"), &a->flags)) {
    return BadJson("attr has a missing or invalid field");
  }
  return Status::OK();
}

class Handler : public nlohmann::json_sax<json> {
 public:
  explicit Handler(Visitor& v) : v_(v) {}
  Status status() const { return st_; }
  bool done() const { return done_; }

  bool null() override { return Deliver(json(nullptr)); }
  bool boolean(bool b) override { return Deliver(json(b)); }
  bool number_integer(number_integer_t n) override { return Deliver(json(n)); }
  bool number_unsigned(number_unsigned_t n) override { return Deliver(json(n)); }
  bool number_float(number_float_t f, const string_t&) override { return Deliver(json(f)); }
  bool string(string_t& s) override { return Deliver(json(std::move(s))); }
  bool binary(binary_t&) override { return Fail(BadJson("binary value")); }

  bool start_object(std::size_t) override {
    if (stack_.empty()) {
      if (done_) return Fail(BadJson("data after the end"));
      stack_.push_back({Kind::kRoot, json::object(), {}, {}});
      return true;
    }
    Frame& p = stack_.back();
    if (p.kind == Kind::kStream && p.name == "inodes") {
      stack_.push_back({Kind::kInode, json::object(), {}, {}});
    } else {
      stack_.push_back({Kind::kBuild, json::object(), {}, {}});
    }
    return Depth();
  }
  bool start_array(std::size_t) override {
    if (stack_.empty()) return Fail(BadJson("the dump is not a JSON object"));
    Frame& p = stack_.back();
    if (p.kind == Kind::kRoot && (p.key == "inodes" || p.key == "deleted_files" ||
                                  p.key == "deleted_slices" || p.key == "slice_refs")) {
      Status s = TopSection(p.key);
      if (!s.ok()) return Fail(s);
      stack_.push_back({Kind::kStream, json(), {}, p.key});
      return true;
    }
    if (p.kind == Kind::kInode && (p.key == "chunks" || p.key == "entries")) {
      Status s = BeginInode(p);
      if (!s.ok()) return Fail(s);
      stack_.push_back({Kind::kStream, json(), {}, p.key});
      return true;
    }
    stack_.push_back({Kind::kBuild, json::array(), {}, {}});
    return Depth();
  }
  bool key(string_t& k) override {
    stack_.back().key = k;
    if (stack_.back().kind == Kind::kRoot) {
      if (!seen_.insert(k).second) return Fail(BadJson("key '" + k + "' appears twice"));
    }
    return true;
  }
  bool end_object() override {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    switch (f.kind) {
      case Kind::kRoot: {
        for (const char* k : {"inodes", "deleted_files", "deleted_slices", "slice_refs"}) {
          if (!seen_.count(k)) return Fail(BadJson(std::string("no \"") + k + "\" array"));
        }
        Status s = v_.End();
        if (!s.ok()) return Fail(s);
        done_ = true;
        return true;
      }
      case Kind::kInode: {
        Status s = EndInode(f);
        return s.ok() ? true : Fail(s);
      }
      default:
        return Deliver(std::move(f.value));
    }
  }
  bool end_array() override {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (f.kind == Kind::kStream) return true;
    return Deliver(std::move(f.value));
  }
  bool parse_error(std::size_t pos, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    std::string what = ex.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> after "]"
    auto p = what.find("] ");
    if (p != std::string::npos) what = what.substr(p + 2);
    if (st_.ok()) {
      st_ = BadJson("malformed or truncated JSON at byte " + std::to_string(pos) + ": " + what);
    }
    return false;
  }

 private:
  enum class Kind { kRoot, kStream, kInode, kBuild };
  struct Frame {
    Kind kind;
    json value;
    std::string key;
    std::string name;  // kStream: which array
    bool begun = false;
    Ino ino = 0;
  };

  bool Fail(Status s) {
    if (st_.ok()) st_ = std::move(s);
    return false;
  }
  bool Depth() {
    if (stack_.size() > 16) return Fail(BadJson("nesting too deep"));
    return true;
  }

  Status TopSection(const std::string& name) {
    if (!header_done_) {
      if (!seen_.count("setting") || !seen_.count("counters")) {
        return BadJson("\"" + name + "\" comes before the settings and counters");
      }
      header_done_ = true;
    }
    return Status::OK();
  }

  // A value completed: into its parent, or to the visitor.
  bool Deliver(json v) {
    if (stack_.empty()) return Fail(BadJson("the dump is not a JSON object"));
    Frame& p = stack_.back();
    Status s;
    switch (p.kind) {
      case Kind::kRoot:
        s = Top(p.key, v);
        break;
      case Kind::kStream:
        s = Element(p.name, v);
        break;
      case Kind::kInode:
      case Kind::kBuild:
        if (p.value.is_array()) {
          p.value.push_back(std::move(v));
        } else {
          p.value[p.key] = std::move(v);
        }
        if (p.value.size() > (1u << 20)) s = BadJson("a record is too large");
        break;
    }
    return s.ok() ? true : Fail(s);
  }

  Status Top(const std::string& key, const json& v) {
    if (key == "format") {
      if (v != kJsonFormatName) return BadJson("not a nexusfs dump (format is not nexusfs-dump)");
      format_ok_ = true;
    } else if (key == "version") {
      if (!v.is_number_unsigned() || v.get<uint64_t>() != kDumpVersion) {
        return Status::NotSupported("dump version " + v.dump() +
                                    " is not supported (this "
                                    "nexusfs reads version " +
                                    std::to_string(kDumpVersion) + ")");
      }
    } else if (key == "secrets") {
    } else if (key == "setting") {
      if (!format_ok_ || !seen_.count("version")) {
        return BadJson("the settings come before \"format\" and \"version\"");
      }
      if (!v.is_object()) return BadJson("\"setting\" is not an object");
      return v_.Setting(v.dump());
    } else if (key == "counters") {
      if (!v.is_object()) return BadJson("\"counters\" is not an object");
      std::vector<std::pair<std::string, uint64_t>> c;
      for (auto it = v.begin(); it != v.end(); ++it) {
        uint64_t n;
        if (!GetU64(it.value(), &n)) return BadJson("counter " + it.key() + " is not a number");
        c.emplace_back(it.key(), n);
      }
      return v_.Counters(c);
    } else {
      return BadJson("unknown key '" + key + "'");
    }
    return Status::OK();
  }

  Ino CurrentIno() const {
    for (auto it = stack_.rbegin(); it != stack_.rend(); ++it) {
      if (it->kind == Kind::kInode) return it->ino;
    }
    return 0;
  }

  Status Element(const std::string& array, const json& v) {
    if (array == "chunks") {
      uint32_t index;
      if (!v.is_array() || v.size() != 2 || !GetUInt(v[0], &index) || !v[1].is_array()) {
        return BadJson("invalid chunk in inode " + std::to_string(CurrentIno()));
      }
      std::vector<Slice> slices;
      for (const json& s : v[1]) {
        Slice sl;
        if (!s.is_array() || s.size() != 5 || !GetUInt(s[0], &sl.pos) || !GetU64(s[1], &sl.id) ||
            !GetUInt(s[2], &sl.size) || !GetUInt(s[3], &sl.off) || !GetUInt(s[4], &sl.len)) {
          return BadJson("invalid slice in inode " + std::to_string(CurrentIno()));
        }
        slices.push_back(sl);
      }
      return v_.Chunk(CurrentIno(), index, slices);
    }
    if (array == "entries") {
      std::string name;
      Ino child;
      FileType t;
      if (!v.is_array() || v.size() != 3 || !GetBytes(v[0], &name) || !GetU64(v[1], &child) ||
          !v[2].is_string() || !ParseFileType(v[2].get<std::string>(), &t)) {
        return BadJson("invalid entry in directory " + std::to_string(CurrentIno()));
      }
      return v_.Entry(CurrentIno(), name, t, child);
    }
    if (array == "inodes") return BadJson("an inode is not an object");
    uint64_t a, b, c = 0;
    size_t want = array == "slice_refs" ? 3 : 2;
    if (!v.is_array() || v.size() != want || !GetU64(v[0], &a) || !GetU64(v[1], &b) ||
        (want == 3 && !GetU64(v[2], &c))) {
      return BadJson("invalid record in \"" + array + "\"");
    }
    if (array == "deleted_files") return v_.DeletedFile(a, b);
    if (b > UINT32_MAX || c > UINT32_MAX) return BadJson("invalid record in \"" + array + "\"");
    if (array == "deleted_slices") return v_.DeletedSlice(a, static_cast<uint32_t>(b));
    return v_.SliceRef(a, static_cast<uint32_t>(b), static_cast<uint32_t>(c));
  }

  Status BeginInode(Frame& f) {
    if (f.begun) return Status::OK();
    f.begun = true;
    auto it = f.value.find("inode");
    if (it == f.value.end() || !GetU64(*it, &f.ino)) return BadJson("an inode without a number");
    std::optional<Attr> attr;
    if (auto a = f.value.find("attr"); a != f.value.end()) {
      Attr at;
      NX_TRY(ParseAttr(*a, &at).With("inode " + std::to_string(f.ino)));
      attr = at;
    }
    for (auto k = f.value.begin(); k != f.value.end(); ++k) {
      if (k.key() != "inode" && k.key() != "attr") {
        return BadJson("inode " + std::to_string(f.ino) + ": \"" + k.key() +
                       "\" comes before its chunks or entries");
      }
    }
    f.value = json::object();
    return v_.InodeBegin(f.ino, attr);
  }

  Status EndInode(Frame& f) {
    json rest = std::move(f.value);
    if (!f.begun) {
      f.value = json::object();
      for (const char* k : {"inode", "attr"}) {
        if (rest.contains(k)) f.value[k] = rest[k];
      }
      NX_TRY(BeginInode(f));
    }
    for (auto k = rest.begin(); k != rest.end(); ++k) {
      const std::string& key = k.key();
      const json& val = k.value();
      if (key == "inode" || key == "attr") continue;
      if (key == "parents") {
        if (!val.is_array()) return BadJson("parents of " + std::to_string(f.ino));
        for (const json& p : val) {
          Ino parent;
          uint32_t count;
          if (!p.is_array() || p.size() != 2 || !GetU64(p[0], &parent) || !GetUInt(p[1], &count)) {
            return BadJson("invalid parent record of inode " + std::to_string(f.ino));
          }
          NX_TRY(v_.Parent(f.ino, parent, count));
        }
      } else if (key == "symlink") {
        std::string target;
        if (!GetBytes(val, &target)) return BadJson("invalid symlink of " + std::to_string(f.ino));
        NX_TRY(v_.Symlink(f.ino, target));
      } else if (key == "xattrs") {
        if (!val.is_array()) return BadJson("xattrs of " + std::to_string(f.ino));
        for (const json& x : val) {
          std::string name, value;
          if (!x.is_array() || x.size() != 2 || !GetBytes(x[0], &name) || !GetBytes(x[1], &value)) {
            return BadJson("invalid xattr of inode " + std::to_string(f.ino));
          }
          NX_TRY(v_.Xattr(f.ino, name, value));
        }
      } else {
        return BadJson("inode " + std::to_string(f.ino) + " has unknown field '" + key + "'");
      }
    }
    return v_.InodeEnd(f.ino);
  }

  Visitor& v_;
  Status st_;
  std::vector<Frame> stack_;
  std::set<std::string> seen_;
  bool format_ok_ = false, header_done_ = false, done_ = false;
};

}  // namespace

std::unique_ptr<Writer> NewJsonWriter(std::FILE* out, bool secrets_kept) {
  return std::make_unique<JsonWriter>(out, secrets_kept);
}

Status ParseJson(std::FILE* in, std::string_view head, Visitor& v) {
  HeadFileBuf buf(in, head);
  std::istream is(&buf);
  Handler h(v);
  bool ok = false;
  try {
    ok = json::sax_parse(is, &h, json::input_format_t::json, /*strict=*/true);
  } catch (const std::exception& e) {
    return BadJson(e.what());
  }
  if (buf.failed()) return Status::IOError("read error in the dump");
  if (!h.status().ok()) return h.status();
  if (!ok || !h.done()) return BadJson("the JSON ends early");
  return Status::OK();
}

}  // namespace nexus::meta::dump
