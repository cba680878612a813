// The mounts this process sees, from /proc/self/mountinfo (proc(5)).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace nexus {

struct MountEntry {
  std::string device;      // "major:minor" of the mounted file system
  std::string mountpoint;  // with the kernel's \ooo escapes undone
  std::string fstype;      // "fuse.nexusfs", "ext4", ...
};

// The entries of a mountinfo file in its order (a later entry at a mount point is mounted over
// an earlier one); none when it cannot be read. Lines that do not parse are skipped.
std::vector<MountEntry> ReadMountinfo(const std::string& path = "/proc/self/mountinfo");

// The topmost mount at `mountpoint` (an absolute path without a trailing slash), if any.
std::optional<MountEntry> MountAt(const std::string& mountpoint,
                                  const std::string& path = "/proc/self/mountinfo");

// A field as mountinfo writes it: space, tab, newline and backslash appear as \ooo (octal).
std::string UnescapeMountinfo(const std::string& field);

}  // namespace nexus
