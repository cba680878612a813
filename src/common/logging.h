// Logging through spdlog. One line per event, naming the inode, path or object key that matters.
#pragma once

#include <spdlog/spdlog.h>

#define NX_LOG_DEBUG(...) SPDLOG_DEBUG(__VA_ARGS__)
#define NX_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define NX_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define NX_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)

namespace nexus {
// Sets the global log level ("debug", "info", "warn", "error") and, if `file` is not empty,
// sends logs to that file instead of stderr.
void InitLogging(const std::string& level, const std::string& file = {});
}  // namespace nexus
