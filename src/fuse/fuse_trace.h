// Private to fuse/: per-operation metrics and access-log lines for the low-level operations.
// Traced<"name", OpX>::Call wraps an operation of the table: it counts it, times it into
// nexusfs_fuse_op_duration_seconds{op="name"} (from the call until the handler returns, which
// is when it has replied, except for lock requests handed to the LockWaiter), and, while
// `.accesslog` is open, appends one line: time, caller, op, arguments, result, latency.
#pragma once

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "common/clock.h"
#include "common/metrics.h"
#include "meta/types.h"

namespace nexus::vfs {
class Vfs;
}

namespace nexus::fuse {

// The errno the current handler replied with on this thread (0 = success), set by ReplyErr.
void NoteReplyError(int err);
int TakeReplyError();

// Tells the server that a request other than INIT arrived (FuseServer::OnRequest).
void NoteRequest(fuse_req_t req);

// The Vfs serving `req`. Like everything read from a request, take it before the handler
// replies: the reply frees the request.
vfs::Vfs* VfsOfRequest(fuse_req_t req);
// True when the access log of `v` has a reader.
bool AccessLogActive(vfs::Vfs* v);
// Appends one line built from the pieces to the access log of `v`.
void WriteAccessLine(vfs::Vfs* v, const fuse_ctx& caller, const char* op, const std::string& args,
                     int err, int64_t start_wall_ns, int64_t latency_ns);

template <size_t N>
struct OpName {
  constexpr OpName(const char (&s)[N]) { std::copy_n(s, N, name); }  // NOLINT: implicit
  char name[N];
};

// Arguments as the access log shows them: numbers, names; pointers to structs are left out.
template <typename T>
void AppendArg(std::string& out, const T& v) {
  if constexpr (std::is_same_v<T, const char*> || std::is_same_v<T, char*>) {
    if (!out.empty()) out += ',';
    out += v ? v : "";
  } else if constexpr (std::is_integral_v<T>) {
    if (!out.empty()) out += ',';
    out += std::to_string(v);
  }
}

template <OpName Name, auto Fn>
struct Traced;

template <OpName Name, typename... A, void (*Fn)(fuse_req_t, A...)>
struct Traced<Name, Fn> {
  static void Call(fuse_req_t req, A... args) {
    static metrics::Histogram& latency =
        metrics::Registry::Default()
            .HistogramFamily("nexusfs_fuse_op_duration_seconds",
                             "Latency of FUSE operations from request to reply.", {"op"})
            .Get({Name.name});
    static metrics::Counter& errors =
        metrics::Registry::Default()
            .CounterFamily("nexusfs_fuse_op_errors_total",
                           "FUSE operations answered with an error (ENOENT included).", {"op"})
            .Get({Name.name});
    NoteRequest(req);
    vfs::Vfs* v = VfsOfRequest(req);
    bool log = AccessLogActive(v) && !IsInternal(args...);
    fuse_ctx caller{};
    if (log) caller = *fuse_req_ctx(req);
    int64_t wall = log ? NowNanos() : 0;
    int64_t start = MonoNanos();
    (void)TakeReplyError();
    {
      metrics::CurrentOpScope op(Name.name);
      Fn(req, args...);
    }
    int64_t ns = MonoNanos() - start;
    latency.ObserveNanos(ns);
    int err = TakeReplyError();
    if (err) errors.Inc();
    if (log) {
      std::string a;
      (AppendArg(a, args), ...);
      WriteAccessLine(v, caller, Name.name, a, err, wall, ns);
    }
  }

 private:
  // Operations on the internal files (the access log's own reads among them) are not logged.
  template <typename First, typename... Rest>
  static bool IsInternal(const First& first, const Rest&...) {
    if constexpr (std::is_same_v<First, fuse_ino_t>) {
      return first > meta::kMaxMetaIno;
    } else {
      return false;
    }
  }
  static bool IsInternal() { return false; }
};

}  // namespace nexus::fuse
