// MetaImpl's volume operations: format, load and update the settings, statfs, sync, and the
// client sessions (SE<sid> info, SH<sid> heartbeat, SS<sid><ino> open inodes).
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <random>

#include "common/clock.h"
#include "common/logging.h"
#include "meta/meta_impl.h"

namespace nexus::meta {
namespace {

// The newest settings layout this code understands.
// 1: the first layout. 2: Attr::kAttrFlagXattrs is maintained (a version-1 client would not set
// it, so it must not write a version-2 volume). 3: Attr::kAttrFlagLocks is maintained.
constexpr int64_t kMetaVersion = 3;
// What statfs reports for a volume without a capacity or inode limit.
constexpr uint64_t kDefaultSpace = 1ULL << 50;  // 1 PiB
constexpr uint64_t kDefaultInodes = 1ULL << 40;
// Open inodes one transaction of session cleanup handles.
constexpr size_t kSessionInodesPerTxn = 100;

std::string NewUuid() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ NowNanos());
  uint64_t hi = gen(), lo = gen();
  hi = (hi & ~0xF000ULL) | 0x4000ULL;                  // version 4
  lo = (lo & ~(0xC000ULL << 48)) | (0x8000ULL << 48);  // variant 1
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

Result<meta::Format> ParseFormat(const std::string& json) {
  meta::Format f;
  std::string error;
  if (!meta::Format::FromJson(json, &f, &error)) {
    return Err(Status::Corruption("volume settings: " + error));
  }
  return f;
}

Attr RootAttr(int64_t now) {
  Attr root;
  root.type = FileType::kDir;
  root.mode = 0755;
  root.nlink = 2;
  root.length = 4096;
  root.atime = root.mtime = root.ctime = now;
  root.parent = kRootIno;
  return root;
}

// Settings a forced format or UpdateFormat may not change: they are baked into the data.
Status CheckSettingsChange(const meta::Format& old, const meta::Format& f) {
  if (f.name != old.name) {
    return Status::InvalidArgument("volume is named '" + old.name + "', not '" + f.name + "'");
  }
  if (f.uuid != old.uuid) {
    return Status::InvalidArgument("volume '" + old.name + "' has uuid " + old.uuid + ", not " +
                                   f.uuid);
  }
  if (f.block_size != old.block_size) {
    return Status::InvalidArgument("the block size of volume '" + old.name + "' cannot change (" +
                                   std::to_string(old.block_size) + ")");
  }
  return Status::OK();
}

std::string SessionJson(const SessionInfo& s) {
  nlohmann::json j = {{"sid", s.sid},         {"host", s.host},
                      {"pid", s.pid},         {"mount_point", s.mount_point},
                      {"version", s.version}, {"start_time", s.start_time}};
  if (s.timeout > 0) j["timeout_ns"] = s.timeout;
  return j.dump();
}

SessionInfo ParseSession(uint64_t sid, std::string_view json) {
  SessionInfo s;
  s.sid = sid;
  try {
    auto j = nlohmann::json::parse(json);
    s.host = j.value("host", "");
    s.pid = j.value("pid", 0u);
    s.mount_point = j.value("mount_point", "");
    s.version = j.value("version", "");
    s.start_time = j.value("start_time", int64_t{0});
    s.timeout = j.value("timeout_ns", int64_t{0});
  } catch (const std::exception& e) {
    NX_LOG_WARN("session {}: damaged record: {}", sid, e.what());
  }
  return s;
}

// True when an O<ino><sid> record other than `mine` exists.
Result<bool> OpenElsewhereTxn(kv::Txn& txn, Ino ino, const std::string& mine) {
  bool found = false;
  NX_TRY(txn.ScanPrefix(keys::OpenPrefix(ino), 2, [&](std::string_view k, std::string_view) {
    if (k != mine) found = true;
    return !found;
  }));
  return found;
}

}  // namespace

Status MetaImpl::Format(const meta::Format& format, bool force) {
  meta::Format f = format;
  if (f.name.empty()) return Status::InvalidArgument("format: the volume needs a name");
  if (f.block_size == 0) return Status::InvalidArgument("format: zero block size");
  if (f.uuid.empty()) f.uuid = NewUuid();
  if (f.created == 0) f.created = NowNanos();
  f.meta_version = kMetaVersion;
  NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(auto old_json, txn.Get(keys::kSetting));
    if (old_json) {
      auto old = ParseFormat(*old_json);
      if (!force) {
        const std::string name = old ? "'" + old->name + "' " : "";
        return Status::Exists("volume " + name + "already formatted in " + engine_->Name());
      }
      if (old) {  // keep the identity; refuse what the data depends on
        f.name = old->name;
        f.uuid = old->uuid;
        f.created = old->created;
        NX_TRY(CheckSettingsChange(*old, f).With("format --force"));
      }
    }
    NX_TRY(txn.Put(keys::kSetting, f.ToJson()));
    NX_ASSIGN_OR_RETURN(auto root, txn.Get(keys::Attr(kRootIno)));
    if (!root) NX_TRY(PutAttrTxn(txn, kRootIno, RootAttr(NowNanos())));
    const std::string next = keys::Counter("nextInode");
    NX_ASSIGN_OR_RETURN(auto next_v, txn.Get(next));
    if (!next_v || keys::DecodeU64(*next_v) <= kRootIno) {
      NX_TRY(txn.Put(next, keys::EncodeU64(kRootIno + 1)));
    }
    return Status::OK();
  }));
  format_ = f;
  NX_LOG_INFO("formatted volume '{}' (uuid {}) in {}", f.name, f.uuid, engine_->Name());
  return Sync();
}

Result<meta::Format> MetaImpl::Load() {
  std::optional<std::string> json;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(json, txn.Get(keys::kSetting));
    return Status::OK();
  }));
  if (!json) return Err(Status::NotFound("volume in " + engine_->Name() + " is not formatted"));
  NX_ASSIGN_OR_RETURN(meta::Format f, ParseFormat(*json));
  if (f.meta_version > kMetaVersion) {
    return Err(Status::NotSupported("volume '" + f.name + "' has metadata version " +
                                    std::to_string(f.meta_version) + "; this client knows up to " +
                                    std::to_string(kMetaVersion) + " (upgrade it)"));
  }
  format_ = f;
  return f;
}

Status MetaImpl::UpdateFormat(const meta::Format& format) {
  meta::Format f = format;
  NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
    f = format;
    NX_ASSIGN_OR_RETURN(auto json, txn.Get(keys::kSetting));
    if (!json) return Status::NotFound("volume in " + engine_->Name() + " is not formatted");
    NX_ASSIGN_OR_RETURN(meta::Format old, ParseFormat(*json));
    NX_TRY(CheckSettingsChange(old, f).With("update settings"));
    f.created = old.created;
    f.meta_version = old.meta_version;
    return txn.Put(keys::kSetting, f.ToJson());
  }));
  format_ = f;
  return Status::OK();
}

Result<StatFs> MetaImpl::GetStatFs(Ino ino) {
  int64_t used = 0, inodes = 0;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(auto v,
                        txn.MultiGet({keys::Counter("usedSpace"), keys::Counter("totalInodes")}));
    used = v[0] ? static_cast<int64_t>(keys::DecodeU64(*v[0])) : 0;
    inodes = v[1] ? static_cast<int64_t>(keys::DecodeU64(*v[1])) : 0;
    return Status::OK();
  }));
  StatFs st;
  st.used_space = static_cast<uint64_t>(std::max<int64_t>(used, 0));
  st.used_inodes = static_cast<uint64_t>(std::max<int64_t>(inodes, 0));
  st.total_space = format_.capacity ? format_.capacity : kDefaultSpace;
  st.avail_space = st.total_space > st.used_space ? st.total_space - st.used_space : 0;
  const uint64_t total_inodes = format_.inodes ? format_.inodes : kDefaultInodes;
  st.avail_inodes = total_inodes > st.used_inodes ? total_inodes - st.used_inodes : 0;
  return st;
}

Status MetaImpl::Sync() { return engine_->Sync(); }

Result<uint64_t> MetaImpl::NewSession(const SessionInfo& info) {
  SessionInfo s = info;
  if (s.start_time == 0) s.start_time = NowNanos();
  NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(int64_t sid, txn.Increment(keys::Counter("nextSession"), 1));
    s.sid = static_cast<uint64_t>(sid);
    NX_TRY(txn.Put(keys::Session(s.sid), SessionJson(s)));
    return txn.Put(keys::Heartbeat(s.sid), keys::EncodeU64(static_cast<uint64_t>(NowNanos())));
  }));
  sid_ = s.sid;
  NX_LOG_INFO("session {} started (host {}, pid {}, mount {})", s.sid, s.host, s.pid,
              s.mount_point);
  return s.sid;
}

Status MetaImpl::Heartbeat() {
  if (sid_ == 0) return Status::InvalidArgument("heartbeat: no session was started");
  return engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(auto info, txn.Get(keys::Session(sid_)));
    if (!info) {
      return Status::Errno(ESTALE, "session " + std::to_string(sid_) +
                                       " was cleaned by another client (stale heartbeat)");
    }
    return txn.Put(keys::Heartbeat(sid_), keys::EncodeU64(static_cast<uint64_t>(NowNanos())));
  });
}

Status MetaImpl::CloseSession() {
  StopCloser();  // releases what CloseDeferred left, so CleanSession finds only the rest
  if (sid_ == 0) return Status::OK();
  NX_TRY(CleanSession(sid_));
  {
    std::lock_guard<std::mutex> lock(open_mu_);
    open_counts_.clear();
    sustained_.clear();
  }
  NX_LOG_INFO("session {} closed", sid_);
  sid_ = 0;
  return Status::OK();
}

Result<std::vector<SessionInfo>> MetaImpl::ListSessions() {
  std::vector<SessionInfo> out;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    out.clear();
    NX_TRY(txn.ScanPrefix("SE", 0, [&](std::string_view k, std::string_view v) {
      if (k.size() == 10) out.push_back(ParseSession(GetBE64(k.data() + 2), v));
      return true;
    }));
    std::vector<std::string> hb;
    for (const SessionInfo& s : out) hb.push_back(keys::Heartbeat(s.sid));
    NX_ASSIGN_OR_RETURN(auto beats, txn.MultiGet(hb));
    for (size_t i = 0; i < out.size(); ++i) {
      if (beats[i]) out[i].heartbeat = static_cast<int64_t>(keys::DecodeU64(*beats[i]));
    }
    return Status::OK();
  }));
  return out;
}

Result<int> MetaImpl::CleanStaleSessions(int64_t timeout_ns) {
  NX_ASSIGN_OR_RETURN(auto sessions, ListSessions());
  const int64_t now = NowNanos();
  int cleaned = 0;
  for (const SessionInfo& s : sessions) {
    // A session that recorded its own timeout is judged by it: it heartbeats to match.
    const int64_t timeout = s.timeout > 0 ? s.timeout : timeout_ns;
    if (s.sid == sid_ || s.heartbeat >= now - timeout) continue;
    NX_TRY(CleanSession(s.sid).With("clean stale session " + std::to_string(s.sid)));
    NX_LOG_INFO("cleaned stale session {} of host {} (last heartbeat {} s ago)", s.sid, s.host,
                (NowNanos() - s.heartbeat) / 1000000000);
    ++cleaned;
  }
  return cleaned;
}

Status MetaImpl::CleanSession(uint64_t sid) {
  NX_TRY(ReleaseSessionLocks(sid));
  NX_TRY(ReleaseSessionInodes(sid));
  return engine_->Update([&](kv::Txn& txn) -> Status {
    NX_TRY(txn.Delete(keys::Session(sid)));
    return txn.Delete(keys::Heartbeat(sid));
  });
}

// Drops the open records of session `sid`, kSessionInodesPerTxn inodes per transaction; an
// inode that was unlinked and is open nowhere else is removed.
Status MetaImpl::ReleaseSessionInodes(uint64_t sid) {
  while (true) {
    std::vector<Ino> inos;
    NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
      inos.clear();
      return txn.ScanPrefix(keys::SustainedPrefix(sid), kSessionInodesPerTxn,
                            [&](std::string_view k, std::string_view) {
                              if (k.size() == 18) inos.push_back(GetBE64(k.data() + 10));
                              return true;
                            });
    }));
    if (inos.empty()) return Status::OK();
    NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status { return ReleaseOpenTxn(txn, inos, sid); }));
  }
}

Status MetaImpl::ReleaseOpenTxn(kv::Txn& txn, const std::vector<Ino>& inos, uint64_t sid) {
  std::vector<std::string> attr_keys;
  attr_keys.reserve(inos.size());
  for (Ino ino : inos) attr_keys.push_back(keys::Attr(ino));
  NX_ASSIGN_OR_RETURN(auto values, txn.MultiGet(attr_keys));
  for (size_t i = 0; i < inos.size(); ++i) {
    const Ino ino = inos[i];
    const std::string open_key = keys::Open(ino, sid);
    NX_TRY(txn.Delete(keys::Sustained(sid, ino)));
    NX_TRY(txn.Delete(open_key));
    if (!values[i]) continue;
    Attr attr;
    NX_TRY(keys::DecodeAttr(*values[i], &attr).With("inode " + std::to_string(ino)));
    if (attr.nlink == 0) {
      NX_ASSIGN_OR_RETURN(bool elsewhere, OpenElsewhereTxn(txn, ino, open_key));
      if (!elsewhere) {
        NX_TRY(PurgeInodeTxn(txn, ino, attr));
        continue;
      }
    }
    // Scans register nothing, so the attribute record is what orders this release against a
    // concurrent unlink (which reads it and scans O records) and against the release of
    // another session's last handle: rewriting it (unchanged) makes them conflict.
    NX_TRY(PutAttrTxn(txn, ino, attr));
  }
  return Status::OK();
}

}  // namespace nexus::meta
