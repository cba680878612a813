#include "common/mountinfo.h"

#include <fstream>
#include <sstream>

namespace nexus {

std::string UnescapeMountinfo(const std::string& field) {
  std::string out;
  auto octal = [&](size_t at) { return field[at] >= '0' && field[at] <= '7'; };
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

std::vector<MountEntry> ReadMountinfo(const std::string& path) {
  std::vector<MountEntry> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL FIELDS...] - FSTYPE SOURCE SUPER-OPTIONS
    std::istringstream fields(line);
    std::string id, parent, dev, root, point, opts, field, fstype;
    if (!(fields >> id >> parent >> dev >> root >> point >> opts)) continue;
    bool dash = false;
    while (fields >> field) {
      if (field == "-") {
        dash = true;
        break;
      }
    }
    if (!dash || !(fields >> fstype)) continue;
    out.push_back(MountEntry{dev, UnescapeMountinfo(point), UnescapeMountinfo(fstype)});
  }
  return out;
}

std::optional<MountEntry> MountAt(const std::string& mountpoint, const std::string& path) {
  std::optional<MountEntry> top;
  for (MountEntry& e : ReadMountinfo(path)) {
    if (e.mountpoint == mountpoint) top = std::move(e);
  }
  return top;
}

}  // namespace nexus
