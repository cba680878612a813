// Constructors of the object-store backends and helpers they share; callers use
// ObjectStore::Open.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "object/object_store.h"

namespace nexus::object {

std::unique_ptr<ObjectStore> NewMemStore();
Result<std::unique_ptr<ObjectStore>> NewFileStore(const std::string& dir,
                                                  const StoreOptions& options);
// s3://, http://, https:// (object/s3_store.cc).
Result<std::unique_ptr<ObjectStore>> NewS3Store(std::string_view url, const StoreOptions& options);

// EINVAL for keys that are empty, start with '/', or have empty, "." or ".." components.
Status ValidateKey(std::string_view key);

}  // namespace nexus::object
