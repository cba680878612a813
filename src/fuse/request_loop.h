// The loop that reads FUSE requests from /dev/fuse and runs them, in place of libfuse's
// fuse_session_loop_mt.
//
// libfuse's loop keeps every idle worker asleep in read(2) on the device. Each request wakes
// one of them and each reply wakes the caller: two thread switches per request, and on a
// virtual machine, where waking a thread on another CPU is expensive, they cost more than the
// request's own work (docs/benchmarks.md, "One reading thread").
//
// Here one thread at a time holds the reading role. It reads a request and, when the request
// is of a kind that rarely waits (metadata on an embedded engine, writes into the buffer,
// flushes, releases, reads of local objects), serves it itself and reads the next: a caller issuing
// one system call after another meets the same thread, which polls the device for a while
// (`spin_ns`) before it sleeps. Requests that wait for I/O (fsync, reads of remote objects) are
// handed off: the reader passes the role to an idle thread (starting one if none is idle) and
// serves the request alongside. A watchdog (the thread that called RunRequestLoop) moves the role
// to another thread when a request served in place runs longer than `stall_ns`, so one slow request
// never holds up the others for long.
#pragma once

#include <cstdint>

struct fuse_session;

namespace nexus::fuse {

struct RequestLoopOptions {
  // Serve the requests that rarely wait in the reading thread. Off: every request is handed
  // off (for engines across a network, where every metadata request waits for a server).
  bool inline_requests = true;
  // With inline_requests, reads are served in place too: for objects on a local disk or in
  // memory, where a read takes microseconds (measured: 4 KiB random reads 28,000/s against
  // 20,000/s handed off, docs/benchmarks.md).
  bool inline_reads = true;
  // How long the reader polls the device after a request before it sleeps; 0 never polls.
  // Only with inline_requests (otherwise another thread serves the request while it polls).
  int64_t spin_ns = 50'000;
  // A request served in place for longer than this gives up the reading role.
  int64_t stall_ns = 1'000'000;
  // Idle threads beyond this many exit; no more than max_threads serve at once.
  unsigned max_idle_threads = 16;
  unsigned max_threads = 256;
};

// Serves `se` until the file system is unmounted or fuse_session_exit is called on it (the
// signal handlers of fuse_set_signal_handlers do). Returns 0, or a negative errno when reading
// the device failed.
int RunRequestLoop(struct fuse_session* se, const RequestLoopOptions& options);

}  // namespace nexus::fuse
