// Vfs: the internal file `.control`, a request/response channel into this mount process for
// commands that need the volume's metadata engine (an embedded engine cannot be opened twice).
//
// Protocol (docs/mount.md): open .control read-write, write one JSON object (at most
// kMaxControlRequest bytes, in one or several writes), then read until EOF. The response is
// newline-delimited JSON: zero or more {"progress":N} lines (one about every second while the
// request runs), then one final line {"ok":true,...} or {"ok":false,"errno":E,"error":"..."}.
// The request runs as the uid/gid/groups of the write that completed it, on a thread of its own
// (a read waits at most a second before it returns a progress line, so the reader stays
// interruptible). One request per open handle. Reads ignore the file offset (which the write
// moved past the request): each continues where the previous one stopped.
#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "chunk/chunk_impl.h"
#include "common/logging.h"
#include "meta/meta.h"
#include "vfs/vfs.h"
#include "vfs/vfs_handles.h"

namespace nexus::vfs {
namespace {

using nlohmann::json;

constexpr int64_t kProgressEveryNs = 1'000'000'000;
constexpr size_t kDirCountBatch = 1000;

std::string ErrorLine(const Status& s) {
  // "error" is the message without the errno name (a client adds its own context and name).
  std::string msg = s.message().empty() ? std::strerror(s.ToErrno()) : s.message();
  json j = {{"ok", false}, {"errno", s.ToErrno()}, {"error", msg}};
  return j.dump() + "\n";
}

const char* TypeName(meta::FileType t) {
  switch (t) {
    case meta::FileType::kFile:
      return "file";
    case meta::FileType::kDir:
      return "dir";
    case meta::FileType::kSymlink:
      return "symlink";
    case meta::FileType::kFifo:
      return "fifo";
    case meta::FileType::kBlockDev:
      return "blockdev";
    case meta::FileType::kCharDev:
      return "chardev";
    case meta::FileType::kSocket:
      return "socket";
  }
  return "unknown";
}

// A request is incomplete while the only error is that the input ended too soon.
enum class Parse { kComplete, kIncomplete, kBad };

Parse TryParse(const std::string& text, json* out, std::string* error) {
  try {
    *out = json::parse(text);
    return Parse::kComplete;
  } catch (const json::parse_error& e) {
    if (e.byte > text.size()) return Parse::kIncomplete;
    *error = e.what();
    return Parse::kBad;
  }
}

}  // namespace

void Vfs::SetEntryInvalidator(EntryInvalidator fn) {
  std::lock_guard<std::mutex> lock(inval_mu_);
  inval_entry_ = std::move(fn);
}

void Vfs::InvalidateEntry(Ino parent, std::string_view name) {
  std::lock_guard<std::mutex> lock(inval_mu_);
  if (inval_entry_) inval_entry_(parent, name);
}

Result<size_t> Vfs::ControlWrite(const Context& ctx, FileHandle& h, const char* data, size_t len) {
  std::shared_ptr<ControlState> state = h.control;
  std::string request;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->started) {
      return Err(EBUSY, ".control takes one request per open; open it again for another");
    }
    if (state->request.size() + len > kMaxControlRequest) {
      return Err(EFBIG,
                 ".control request larger than " + std::to_string(kMaxControlRequest) + " bytes");
    }
    state->request.append(data, len);
    json parsed;
    std::string error;
    Parse p = TryParse(state->request, &parsed, &error);
    if (p == Parse::kIncomplete) return len;  // wait for the rest
    state->started = true;
    if (p == Parse::kBad) {
      state->response = ErrorLine(Status::Errno(EINVAL, ".control request is not JSON: " + error));
      state->done = true;
      state->cv.notify_all();
      return len;
    }
    request = std::move(state->request);
    state->request.clear();
  }
  {
    std::lock_guard<std::mutex> lock(control_mu_);
    ++control_running_;
  }
  std::thread([this, ctx, request = std::move(request), state] {
    auto r = RunControl(ctx, request, *state);
    {
      std::lock_guard<std::mutex> lock(state->mu);
      state->response += r ? *r + "\n" : ErrorLine(r.error());
      state->done = true;
      state->cv.notify_all();
    }
    std::lock_guard<std::mutex> lock(control_mu_);
    --control_running_;
    control_cv_.notify_all();  // under the lock: ~Vfs cannot return before this is done
  }).detach();
  return len;
}

Result<size_t> Vfs::ControlRead(FileHandle& h, uint64_t off, char* buf, size_t len) {
  ControlState& st = *h.control;
  std::unique_lock<std::mutex> lock(st.mu);
  if (!st.started) {
    return Err(EINVAL, st.request.empty() ? "write a request to .control before reading"
                                          : ".control request is incomplete JSON");
  }
  // The file offset is past the request just written: reads ignore it and continue where the
  // previous read of this handle stopped.
  const uint64_t at = st.read_pos;
  const auto ready = [&] { return st.done || st.response.size() > at; };
  if (!st.cv.wait_for(lock, std::chrono::nanoseconds(kProgressEveryNs), ready)) {
    // Still running: a progress line (also a keep-alive, so the reader can be interrupted).
    st.progress_shown = st.progress.load(std::memory_order_relaxed);
    st.response += json({{"progress", st.progress_shown}}).dump() + "\n";
  }
  if (at >= st.response.size()) return size_t{0};
  size_t n = std::min<uint64_t>(len, st.response.size() - at);
  std::copy_n(st.response.data() + at, n, buf);
  st.read_pos += n;
  return n;
}

Result<std::string> Vfs::RunControl(const Context& ctx, const std::string& request,
                                    ControlState& state) {
  json j = json::parse(request, nullptr, false);
  if (!j.is_object()) return Err(EINVAL, ".control request must be a JSON object");
  if (!j.contains("op") || !j["op"].is_string()) {
    return Err(EINVAL, ".control request needs \"op\" (a string: info, rmr)");
  }
  const std::string op = j["op"].get<std::string>();
  auto ino_field = [&](const char* key) -> Result<Ino> {
    if (!j.contains(key) || !j[key].is_number_unsigned() || j[key].get<uint64_t>() == 0) {
      return Err(EINVAL, "op " + op + " needs \"" + key + "\" (an inode number)");
    }
    return j[key].get<uint64_t>();
  };
  if (op == "info") {
    NX_ASSIGN_OR_RETURN(Ino ino, ino_field("ino"));
    return ControlInfo(ctx, ino);
  }
  if (op == "rmr") {
    NX_ASSIGN_OR_RETURN(Ino parent, ino_field("parent"));
    if (!j.contains("name") || !j["name"].is_string()) {
      return Err(EINVAL, "op rmr needs \"name\" (an entry of the parent directory)");
    }
    return ControlRmr(ctx, parent, j["name"].get<std::string>(), state);
  }
  return Err(EINVAL, "unknown .control op '" + op + "' (known: info, rmr)");
}

Result<std::string> Vfs::ControlInfo(const Context& ctx, Ino ino) {
  if (IsInternalIno(ino)) return Err(EINVAL, "inode " + std::to_string(ino) + " is internal");
  // Committed metadata only: data this mount has not flushed yet has no slice record.
  NX_ASSIGN_OR_RETURN(Attr a, meta_->GetAttr(ino));
  json out = {{"ok", true},       {"ino", ino},       {"type", TypeName(a.type)},
              {"mode", a.mode},   {"uid", a.uid},     {"gid", a.gid},
              {"size", a.length}, {"nlink", a.nlink}, {"atime", a.atime},
              {"mtime", a.mtime}, {"ctime", a.ctime}, {"parent", a.parent}};
  if (a.type == meta::FileType::kSymlink) {
    NX_ASSIGN_OR_RETURN(std::string target, meta_->ReadLink(ino));
    out["target"] = target;
  }
  if (a.type == meta::FileType::kDir) {
    uint64_t entries = 0;
    std::string after;
    std::vector<meta::DirEntry> batch;
    while (true) {
      batch.clear();
      NX_TRY(meta_->ReadDir(ctx, ino, after, kDirCountBatch, false, &batch));
      entries += batch.size();
      if (batch.size() < kDirCountBatch) break;
      after = batch.back().name;
    }
    out["entries"] = entries;
  }
  if (a.type == meta::FileType::kFile) {
    const meta::Format& f = meta_->format();
    const std::string prefix = f.name + "/";
    const uint64_t bs = f.block_size;
    uint64_t n_chunks = 0, n_slices = 0, n_objects = 0, bytes = 0;
    json chunks = json::array();
    const uint64_t last = a.length == 0 ? 0 : (a.length - 1) / meta::kChunkSize + 1;
    for (uint64_t index = 0; index < last; ++index) {
      NX_ASSIGN_OR_RETURN(auto slices, meta_->ReadChunk(ino, static_cast<uint32_t>(index)));
      if (slices.empty()) continue;
      json js = json::array();
      for (const meta::Slice& s : slices) {
        json objects = json::array();
        if (s.id != 0 && s.len > 0) {
          for (uint64_t blk = s.off / bs; blk <= (uint64_t{s.off} + s.len - 1) / bs; ++blk) {
            const uint32_t size = static_cast<uint32_t>(std::min<uint64_t>(bs, s.size - blk * bs));
            objects.push_back(chunk::BlockKey(prefix, s.id, static_cast<uint32_t>(blk), size));
          }
          bytes += s.len;
        }
        n_objects += objects.size();
        js.push_back({{"id", s.id},
                      {"pos", s.pos},
                      {"off", s.off},
                      {"len", s.len},
                      {"size", s.size},
                      {"objects", std::move(objects)}});
      }
      n_slices += slices.size();
      ++n_chunks;
      chunks.push_back({{"index", index}, {"slices", std::move(js)}});
    }
    out["chunks"] = std::move(chunks);
    out["totals"] = {
        {"chunks", n_chunks}, {"slices", n_slices}, {"objects", n_objects}, {"bytes", bytes}};
  }
  return out.dump();
}

Result<std::string> Vfs::ControlRmr(const Context& ctx, Ino parent, const std::string& name,
                                    ControlState& state) {
  NX_TRY(CheckWritable());
  if (IsInternalIno(parent)) return Err(ENOTDIR, "internal files are not directories");
  NX_TRY(CheckNotInternal(parent, name));
  auto removed = meta_->RemoveTree(ctx, parent, name, [&state](uint64_t n) {
    state.progress.store(n, std::memory_order_relaxed);
  });
  // The kernel still has the removed dentry (and everything under it) cached: drop it, also
  // after a failure part-way (then part of the tree is gone). Files of the tree that are open
  // stay readable through their handles (open-but-unlinked), so no chunk state is dropped.
  InvalidateEntry(parent, name);
  if (!removed) return Err(removed.error());
  NX_LOG_INFO("rmr '{}' in directory {} by uid {}: {} entries removed", name, parent, ctx.uid,
              *removed);
  return json({{"ok", true}, {"removed", *removed}}).dump();
}

}  // namespace nexus::vfs
