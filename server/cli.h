// Command-line parsing for `kuai`. Pure functions, used by main() only.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "server/config.h"

namespace kuai::server {

struct CliResult {
  enum class Action { kServe, kScript, kHelp, kVersion, kError } action = Action::kError;
  ServerConfig config;
  std::string error;  // one line, for kError
};

CliResult parseCommandLine(const std::vector<std::string>& args);
std::string usage();
extern const char* const kVersion;

// "8k" -> 8192, "1m" -> 1048576, "512" -> 512. nullopt when malformed.
std::optional<uint64_t> parseSize(const std::string& s);
// "10s" -> 10000, "250ms" -> 250, "2" -> 2000 (seconds), "1m" -> 60000.
std::optional<uint64_t> parseDurationMs(const std::string& s);

}  // namespace kuai::server
