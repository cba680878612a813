// Private to fuse/: the table of low-level operations served by FuseServer.
#pragma once

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

namespace nexus::fuse {

// One function per operation; each replies exactly once. Session userdata is the FuseServer.
const struct fuse_lowlevel_ops& LowLevelOps();

}  // namespace nexus::fuse
