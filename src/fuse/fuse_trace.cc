#include "fuse/fuse_trace.h"

#include <cstdio>
#include <cstring>
#include <ctime>

#include "fuse/fuse_server.h"
#include "vfs/vfs.h"

namespace nexus::fuse {
namespace {

thread_local int tl_reply_error = 0;

}  // namespace

void NoteRequest(fuse_req_t req) { static_cast<FuseServer*>(fuse_req_userdata(req))->OnRequest(); }

vfs::Vfs* VfsOfRequest(fuse_req_t req) {
  return static_cast<FuseServer*>(fuse_req_userdata(req))->vfs();
}

void NoteReplyError(int err) { tl_reply_error = err; }

int TakeReplyError() {
  int e = tl_reply_error;
  tl_reply_error = 0;
  return e;
}

bool AccessLogActive(vfs::Vfs* v) { return v->access_log().Active(); }

void WriteAccessLine(vfs::Vfs* v, const fuse_ctx& caller, const char* op, const std::string& args,
                     int err, int64_t start_wall_ns, int64_t latency_ns) {
  const fuse_ctx* c = &caller;
  time_t secs = static_cast<time_t>(start_wall_ns / 1000000000);
  struct tm tm;
  localtime_r(&secs, &tm);
  char when[32];
  std::strftime(when, sizeof(when), "%Y.%m.%d %H:%M:%S", &tm);
  char line[160];
  std::snprintf(line, sizeof(line), "%s.%06d [uid:%u,gid:%u,pid:%d] ", when,
                static_cast<int>((start_wall_ns % 1000000000) / 1000), c->uid, c->gid, c->pid);
  std::string out = line;
  out += op;
  out += " (";
  out += args;
  out += "): ";
  if (err) {
    out += std::strerror(err);
  } else {
    out += "OK";
  }
  std::snprintf(line, sizeof(line), " <%.6f>\n", static_cast<double>(latency_ns) / 1e9);
  out += line;
  v->access_log().Append(out);
}

}  // namespace nexus::fuse
