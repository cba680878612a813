// Staging: the local half of writeback mode (ChunkOptions::writeback, `mount --writeback`).
//
// A block that a flush (close, fsync, the idle flusher) would otherwise wait to upload is written
// to a file in the staging directory instead, the slice is committed at once, and uploader
// threads send the staged files to the object store in the background, deleting each file once
// its object is stored. Reads of a block not uploaded yet are served from its staged file.
// Blocks left staged by a process that stopped (unmounted with the store down, killed) are found
// by the next Open of the same directory and uploaded then.
//
// Layout: DIR/<escaped key> (cache::EscapeKey) holding a 24-byte header (magic "NXSG", format
// version 1, payload length, XXH3-64 of the payload; big-endian) and the block's bytes;
// DIR/.tmp.<pid>.<n> while one is written. A staged file is renamed into place only once whole,
// and is verified whenever it is read, so a torn or damaged file is never uploaded or served.
// Files are not fsynced when staged (a close does not promise durability); Sync() fsyncs them
// (fsync of any file of the volume calls it).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace nexus::object {
class ObjectStore;
}

namespace nexus::chunk {

struct StagingStats {
  uint64_t blocks = 0;         // staged now, not yet uploaded
  uint64_t bytes = 0;          // their payload bytes
  uint64_t staged = 0;         // blocks staged since Open
  uint64_t uploaded = 0;       // staged blocks uploaded since Open
  uint64_t upload_errors = 0;  // failed upload attempts (each is tried again later)
  uint64_t recovered = 0;      // blocks an earlier process left, found at Open
  uint64_t lost = 0;           // staged files found damaged or missing before their upload
};

// Contract: thread-safe. Stage, Get and Discard never wait for an upload.
class Staging {
 public:
  // Called by an uploader, outside any lock, with each block it has uploaded, just before its
  // staged file goes (the chunk layer hands it to the disk cache).
  using UploadedFn =
      std::function<void(const std::string& key, std::shared_ptr<const std::string> data)>;
  // Creates `dir` if needed, removes leftover temp files and queues the upload of every block
  // already staged there. `uploaders` threads upload to `store`, which must outlive this. A
  // block staged by this process waits `upload_delay_ns` before its upload (a file deleted
  // meanwhile is never uploaded); blocks found at Open upload at once. `on_uploaded`, if set,
  // sees every block uploaded.
  static Result<std::unique_ptr<Staging>> Open(const std::string& dir, object::ObjectStore* store,
                                               int uploaders, int64_t upload_delay_ns = 0,
                                               UploadedFn on_uploaded = {});
  // Stop()s.
  ~Staging();
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  // Writes `data` as the staged block `key` and queues its upload. An error (no space, an I/O
  // error) leaves nothing staged: the caller uploads the block itself.
  Status Stage(const std::string& key, std::string_view data);
  // The staged block `key`, verified; null when it is not staged (never was, or is uploaded) or
  // its file fails verification (logged, counted as lost).
  std::shared_ptr<const std::string> Get(const std::string& key);
  // Forgets `key` (its slice was deleted): the file goes now, or, when its upload is under way,
  // the file and the object both go once the upload ends.
  void Discard(const std::string& key);
  // Makes every staged block durable on the local disk (fsyncs the files staged since the last
  // Sync, then the directory).
  Status Sync();
  // Waits until nothing is staged, uploading what waits for its delay or a retry at once. Fails,
  // naming what is left, when no upload has succeeded for `stall_ns` while blocks remain (the store
  // is down): those stay staged for the next Open.
  Status Drain(int64_t stall_ns);
  // Stops the uploaders (an upload under way finishes first); what is still staged stays on
  // disk for the next Open. Stats and Get still work after it. Idempotent.
  void Stop();
  StagingStats Stats() const;
  const std::string& dir() const { return dir_; }

 private:
  enum class State { kQueued, kUploading };
  struct Item {
    uint64_t size = 0;
    State state = State::kQueued;
    bool discarded = false;  // deleted while uploading: drop the object once stored
    bool synced = false;
    int attempts = 0;
    std::multimap<int64_t, std::string>::iterator queued;  // in ready_, while kQueued
  };

  Staging(std::string dir, object::ObjectStore* store, int64_t upload_delay_ns,
          UploadedFn on_uploaded);
  Status Scan();
  std::string PathFor(std::string_view key) const;
  // Queues `key` to upload at monotonic time `at`. Requires mu_.
  void QueueLocked(const std::string& key, Item& item, int64_t at);
  void Work();
  // Reads and verifies the staged file at `path`; a message in `why` when it fails.
  static bool ReadStaged(const std::string& path, std::string* payload, std::string* why);

  const std::string dir_;
  object::ObjectStore* const store_;
  const UploadedFn on_uploaded_;
  const int64_t upload_delay_ns_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // a block became ready, or stopping
  std::condition_variable done_cv_;  // an upload ended (Drain)
  std::unordered_map<std::string, Item> items_;
  std::multimap<int64_t, std::string> ready_;  // queued keys by the time they may upload
  uint64_t bytes_ = 0;
  uint64_t staged_ = 0, uploaded_ = 0, upload_errors_ = 0, recovered_ = 0, lost_ = 0;
  uint64_t tmp_seq_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace nexus::chunk
