// Helpers shared by the subcommands: opening a volume, parsing sizes, printing errors.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::cli {

// Opens the engine at `meta_url` and wraps it in Meta without loading the volume.
Result<std::unique_ptr<meta::Meta>> OpenMetaUnloaded(std::string_view meta_url,
                                                     meta::MetaOptions options = {});
// For an embedded engine URL (a plain path, rocksdb://, sqlite3://) whose files do not exist
// yet: their path. Otherwise "" (the files exist, or the engine is not embedded).
std::string MissingEmbeddedPath(std::string_view meta_url);

// Opens the engine and loads the volume; "volume at X is not formatted" when it is not.
Result<std::unique_ptr<meta::Meta>> OpenMeta(std::string_view meta_url,
                                             meta::MetaOptions options = {});

// The object-store URL of a volume: storage "file" + bucket DIR -> "file://DIR", "mem" ->
// "mem://", "s3" -> the bucket URL as given (a bare name means s3://NAME).
std::string StorageUrl(const std::string& storage, const std::string& bucket);
// The options to open a volume's object store with: the credentials kept in its settings.
object::StoreOptions StoreOptionsFor(const meta::Format& f);
// `url` without a password (for messages and output).
std::string RedactedUrl(const std::string& url);
// Where a mount keeps the disk cache of a volume on remote storage when --cache-dir is not
// given: /var/cache/nexusfs/<uuid> for root, else ${XDG_CACHE_HOME:-~/.cache}/nexusfs/<uuid>
// (docs/cache.md). Empty for an empty uuid.
std::string DefaultCacheDir(const std::string& uuid);

// "4M", "64K", "1G", "4096" (bytes; K/M/G/T are powers of 1024; a trailing 'i'/'B' is accepted).
Result<uint64_t> ParseSize(std::string_view text);

// Prints "nexusfs <cmd>: <message>" to stderr and sets the exit code to 1.
void Fail(std::string_view cmd, const Status& s);

// The failed system call's errno as a Status: "<what>: <strerror>".
Status Errno(const std::string& what);

class Progress;
// Reads the file `path` to its end through `buf` (the bytes are not kept: warmup and bench read
// to fill caches or to time reads), adding the bytes read to *bytes and to `prog` when given.
Status ReadThrough(const std::string& path, std::string& buf, Progress* prog, uint64_t* bytes);

}  // namespace nexus::cli
