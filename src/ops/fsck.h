// Volume checks and maintenance that read the whole metadata engine: fsck (consistency of the
// key schema of src/meta/keys.h, and of the block objects live slices need) and gc (block
// objects nothing references, pending deletions, compaction). docs/operations.md describes
// what each checks, repairs and prints.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "meta/types.h"

namespace nexus::meta {
class Meta;
}
namespace nexus::object {
class ObjectStore;
}

namespace nexus::ops {

// One inconsistency. `kind` is a short stable tag (docs/operations.md lists them), `object`
// names the inode, entry, slice, key or counter, `message` says what is wrong in one line.
struct Problem {
  std::string kind;
  std::string object;
  std::string message;
  bool repairable = false;

  // What a repair needs (meaning depends on kind).
  meta::Ino ino = 0;
  meta::Ino parent = 0;
  std::string name;  // entry name, counter name, or raw key
  uint64_t slice = 0;
  uint32_t size = 0;
  int64_t expected = 0;
  int64_t actual = 0;
  uint8_t type = 0;

  std::string Line() const { return kind + " " + object + ": " + message; }
};

struct FsckOptions {
  bool repair = false;
  // Head every block of every live slice (the slow part on a remote store).
  bool check_blocks = true;
  int threads = 10;  // parallel Heads
  // Bounded memory: each pass over the engine counts the entries naming inode numbers in one
  // window of `ino_window` numbers (72 bytes each) and the chunk records naming slice ids in one
  // window of `slice_window` ids (8 bytes each). Larger volumes take more passes.
  uint64_t ino_window = 512 * 1024;
  uint64_t slice_window = 8 * 1024 * 1024;
  size_t scan_batch = 4096;  // keys read per engine call
  // Problems kept in the report (more are counted, and printed through on_problem).
  size_t max_problems = 100000;
  // Only check the subtree under this directory (walked through the entries); "" = the whole
  // volume.
  std::string path;
  std::string block_prefix;  // the volume's object key prefix: "<name>/"
  // Called for each problem found by the first check, as it is found.
  std::function<void(const Problem&)> on_problem;
  // Called for each repair done (one line), and for each problem left after the repair.
  std::function<void(const std::string&)> on_repair;
};

struct FsckStats {
  uint64_t inodes = 0;
  uint64_t entries = 0;
  uint64_t chunks = 0;
  uint64_t slice_records = 0;
  uint64_t live_slices = 0;
  uint64_t blocks_checked = 0;
  uint64_t passes = 0;
  uint64_t used_space = 0;  // sum of file lengths
};

struct FsckReport {
  FsckStats stats;
  std::vector<Problem> problems;  // found by the first check
  uint64_t problem_count = 0;     // may exceed problems.size()
  std::vector<std::string> repairs;
  std::vector<Problem> remaining;  // left after repair (only with repair)
  bool repaired_all = false;
};

// Checks the volume (the metadata inside one consistent engine snapshot per round), and with
// options.repair fixes what it can, then checks again (up to three rounds).
Result<FsckReport> Fsck(meta::Meta* meta, object::ObjectStore* store, const FsckOptions& options);

struct GcOptions {
  bool do_delete = false;
  bool compact = false;
  // List every object under "<name>/chunks/" (volumes formatted before slice-id batches were
  // recorded, and a cross-check). Default: only the ids of the recorded batches (R records of
  // src/meta/keys.h) that no chunk references are looked up, by narrow prefixes.
  bool full = false;
  int threads = 10;
  // Unreferenced objects younger than this may belong to an upload whose commit is under way:
  // they are counted apart and never deleted. A recorded batch is closed only when no id of it
  // can have been handed out for this long (its session is gone, or took a later batch).
  int64_t min_age_ns = 3600LL * 1000000000LL;
  // A session whose last heartbeat is newer than this (or than its own recorded timeout) is
  // live: its current batch is never closed.
  int64_t session_timeout_ns = 300LL * 1000000000LL;
  int compact_min_slices = 5;  // --compact: chunks with at least this many records
  std::string block_prefix;    // "<name>/"
  uint32_t block_size = 4 << 20;
  size_t max_listed_keys = 1000;  // leaked keys kept in the report
};

struct GcReport {
  uint64_t objects = 0, bytes = 0;                // block objects listed
  uint64_t referenced = 0, referenced_bytes = 0;  // of a slice some chunk names
  uint64_t pending = 0, pending_bytes = 0;        // of a slice awaiting deletion (L record)
  uint64_t leaked = 0, leaked_bytes = 0;          // unreferenced, older than the window
  uint64_t young = 0, young_bytes = 0;            // unreferenced, inside the window
  uint64_t deleted = 0, deleted_bytes = 0;
  uint64_t delete_failed = 0;
  uint64_t foreign = 0;          // keys under chunks/ that are not blocks
  uint64_t pending_files = 0;    // removed files awaiting release (D records)
  uint64_t pending_slices = 0;   // L records before cleanup
  uint64_t slices_released = 0;  // removed by CleanupDeleted
  uint64_t chunks_compacted = 0;
  uint64_t list_calls = 0;  // List requests sent to the store
  // Temporary files of Puts that never finished (file://, a client killed mid-upload), older
  // than the window; removed with do_delete.
  uint64_t leftovers = 0, leftover_bytes = 0, leftovers_removed = 0;
  // Default mode: recorded batches, those of live sessions (never closed), those inside the
  // window (kept), and those removed (every id committed, or its objects deleted).
  uint64_t ranges = 0, ranges_active = 0, ranges_waiting = 0, ranges_removed = 0;
  // Default mode: slice ids below this were taken before batches were recorded; only gc --full
  // finds their leaks (0: every id is covered).
  uint64_t unrecorded_below = 0;
  std::vector<std::string> leaked_keys;  // the first max_listed_keys
  std::vector<std::string> foreign_keys;
};

// Runs on a loaded `meta` and the volume's object store stack. Opens a ChunkStore (no
// background threads) on them for compaction and for deleting the objects of released slices.
Result<GcReport> Gc(meta::Meta* meta, object::ObjectStore* store, const GcOptions& options);

// Parses "<prefix>chunks/<id/1e6>/<id/1e3>/<id>_<block>_<size>"; false for anything else.
bool ParseBlockKey(std::string_view key, std::string_view prefix, uint64_t* id, uint32_t* block,
                   uint32_t* size);

}  // namespace nexus::ops
