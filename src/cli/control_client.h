// The client side of a mount's `.control` file (docs/mount.md): find the NexusFS mount that
// holds a path, send one JSON request to the mount process and read its answer.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace nexus::cli {

// The `.control` file of the NexusFS mount that holds `path` (which must exist; a final symlink
// is not followed). The mount root is found by walking up from the path while st_dev stays the
// same. ENOTSUP "PATH is not on a NexusFS mount" when that file system is not FUSE or has no
// .control.
struct MountRef {
  std::string root;     // the mount point
  std::string control;  // root + "/.control"
};
Result<MountRef> FindMount(const std::string& path);

// Writes `request` to `control`, reads the answer until EOF and returns its final object
// ({"ok":true,...}); an {"ok":false} answer becomes a Status with its errno and message.
// `on_progress` (if set) gets the count of each progress line.
Result<nlohmann::json> ControlRequest(const std::string& control, const nlohmann::json& request,
                                      const std::function<void(uint64_t)>& on_progress = {});

}  // namespace nexus::cli
