// Dump and load of a whole volume's metadata (`nexusfs dump` / `nexusfs load`, docs/dump.md).
//
// A dump is a logical stream: the settings, the counters, then every inode in inode order with
// its attributes, chunks, directory entries, parent records, symlink target and xattrs, then the
// pending deletions and the reference counts of shared slices. Sessions, open-file records and
// locks are left out (they belong to running clients); a file that was unlinked while open is
// dumped as a removed file whose data awaits release, as the cleanup of its session would leave
// it. Two encodings carry the same stream: JSON (readable, diffable) and binary (compact,
// framed sections with checksums; docs/formats.md). Both are written and read in bounded memory.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/status.h"

namespace nexus::kv {
class Engine;
}

namespace nexus::meta::dump {

enum class Encoding { kJson, kBinary };

struct DumpOptions {
  Encoding encoding = Encoding::kJson;
  // Keep the secret key, session token and encryption key material in the settings; otherwise
  // they read "removed".
  bool keep_secrets = false;
  // Keys read per scan call inside the snapshot.
  size_t scan_batch = 4096;
  // Chunk and entry records of one inode held back until its attributes (which sort after
  // them) are read; past this many bytes the attributes are read ahead with a point read.
  size_t max_held_bytes = 8 << 20;
};

struct Stats {
  uint64_t inodes = 0;   // inodes with attributes
  uint64_t entries = 0;  // directory entries
  uint64_t chunks = 0;   // chunk records
  uint64_t xattrs = 0;
  uint64_t deleted_files = 0;   // D records (including files unlinked while open)
  uint64_t deleted_slices = 0;  // L records
  uint64_t slice_refs = 0;      // K records
  uint64_t bytes = 0;           // dump size
  uint64_t keys = 0;            // keys written (load)
  std::vector<std::string> warnings;
};

// Writes the volume held by `engine` to `out` from one snapshot (Engine::View). `out` must be
// seekable: when the engine re-runs the snapshot read (SQLite busy, a Redis conflict) the dump
// starts again from offset 0.
Result<Stats> Dump(kv::Engine& engine, std::FILE* out, const DumpOptions& options);

struct LoadOptions {
  // Concurrent write transactions.
  int threads = 4;
  // Bounds of one write transaction.
  size_t batch_keys = 2048;
  size_t batch_bytes = 2 << 20;
};

// Loads a dump (JSON or binary, told apart by its first bytes) into `engine`, which must hold no
// key at all. Every record is checked (names, types, link counts, every entry naming a live
// inode of its type, slice reference counts, counters) before the settings key is written last;
// on any error every key written is removed again and the engine is left empty.
Result<Stats> Load(kv::Engine& engine, std::FILE* in, const LoadOptions& options);

}  // namespace nexus::meta::dump
