#include "common/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace nexus {

void InitLogging(const std::string& level, const std::string& file) {
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (!file.empty()) {
      logger = spdlog::basic_logger_mt("nexusfs", file);
    } else {
      logger = spdlog::stderr_color_mt("nexusfs");
    }
  } catch (const spdlog::spdlog_ex&) {
    logger = spdlog::get("nexusfs");
  }
  if (logger) spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%L%$ [%t] %v");
}

}  // namespace nexus
