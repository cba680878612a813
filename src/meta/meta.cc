// Meta::Create, the value types' helpers (FileType <-> mode, Context::InGroup) and the JSON
// form of the volume settings (the `setting` key, docs/formats.md).
#include "meta/meta.h"

#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "meta/meta_impl.h"

namespace nexus::meta {

std::unique_ptr<Meta> Meta::Create(std::unique_ptr<kv::Engine> engine, MetaOptions options) {
  return std::make_unique<MetaImpl>(std::move(engine), options);
}

FileType FileTypeFromMode(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return FileType::kDir;
    case S_IFLNK:
      return FileType::kSymlink;
    case S_IFIFO:
      return FileType::kFifo;
    case S_IFBLK:
      return FileType::kBlockDev;
    case S_IFCHR:
      return FileType::kCharDev;
    case S_IFSOCK:
      return FileType::kSocket;
    default:
      return FileType::kFile;
  }
}

mode_t ModeFromFileType(FileType t) {
  switch (t) {
    case FileType::kDir:
      return S_IFDIR;
    case FileType::kSymlink:
      return S_IFLNK;
    case FileType::kFifo:
      return S_IFIFO;
    case FileType::kBlockDev:
      return S_IFBLK;
    case FileType::kCharDev:
      return S_IFCHR;
    case FileType::kSocket:
      return S_IFSOCK;
    case FileType::kFile:
      break;
  }
  return S_IFREG;
}

bool Context::InGroup(uint32_t g) const {
  return g == gid || std::find(gids.begin(), gids.end(), g) != gids.end();
}

namespace {

constexpr const char* kRedacted = "removed";

std::string Secret(const std::string& value, bool redact) {
  return redact && !value.empty() ? kRedacted : value;
}

// Reads `key` into `*field` when present; a value of the wrong type throws (caught by FromJson).
template <typename T>
void Read(const nlohmann::json& j, const char* key, T* field) {
  auto it = j.find(key);
  if (it != j.end() && !it->is_null()) *field = it->get<T>();
}

}  // namespace

std::string Format::ToJson(bool redact) const {
  nlohmann::json j = {
      {"name", name},
      {"uuid", uuid},
      {"storage", storage},
      {"bucket", bucket},
      {"access_key", access_key},
      {"secret_key", Secret(secret_key, redact)},
      {"session_token", Secret(session_token, redact)},
      {"block_size", block_size},
      {"capacity", capacity},
      {"inodes", inodes},
      {"compression", compression},
      {"encrypt_key", Secret(encrypt_key, redact)},
      {"encrypt_algo", encrypt_algo},
      {"encrypt_data_key", Secret(encrypt_data_key, redact)},
      {"block_format", block_format},
      {"trash_days", trash_days},
      {"meta_version", meta_version},
      {"created", created},
  };
  return j.dump();
}

bool Format::FromJson(const std::string& json, Format* out, std::string* error) {
  try {
    nlohmann::json j = nlohmann::json::parse(json);
    if (!j.is_object()) {
      *error = "settings are not a JSON object";
      return false;
    }
    Format f;
    Read(j, "name", &f.name);
    Read(j, "uuid", &f.uuid);
    Read(j, "storage", &f.storage);
    Read(j, "bucket", &f.bucket);
    Read(j, "access_key", &f.access_key);
    Read(j, "secret_key", &f.secret_key);
    Read(j, "session_token", &f.session_token);
    Read(j, "block_size", &f.block_size);
    Read(j, "capacity", &f.capacity);
    Read(j, "inodes", &f.inodes);
    Read(j, "compression", &f.compression);
    Read(j, "encrypt_key", &f.encrypt_key);
    Read(j, "encrypt_algo", &f.encrypt_algo);
    Read(j, "encrypt_data_key", &f.encrypt_data_key);
    Read(j, "block_format", &f.block_format);
    Read(j, "trash_days", &f.trash_days);
    Read(j, "meta_version", &f.meta_version);
    Read(j, "created", &f.created);
    if (f.name.empty()) {
      *error = "settings have no volume name";
      return false;
    }
    if (f.block_size == 0) {
      *error = "settings have a zero block size";
      return false;
    }
    *out = std::move(f);
    return true;
  } catch (const std::exception& e) {
    *error = std::string("settings are not valid JSON: ") + e.what();
    return false;
  }
}

}  // namespace nexus::meta
