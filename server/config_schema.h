// The config file's schema, as data: for each object of the file (the top
// level, a listener, a route, a proxy, limits...) a table of fields, each with
// its key, what it takes (type and range) and where it goes in the native
// structures (Site, ServerConfig). The checks and their messages come from
// the tables: one line naming the file, the key path and what was expected,
//   kuai.config.js: routes[1].proxy.balance: expected one of "round_robin", ...
// Used by config_file.cc; the schema in prose is at the top of config_file.h.
#pragma once

#include <string>

#include "server/config.h"
#include "server/json.h"

namespace kuai::server {

// Checks `root` (a config file's value) and fills `site` and the settings of
// `config` the file names (threads, io, limits, timeouts, maxRequests).
// Relative paths resolve against baseDir. False with `err` set otherwise.
bool readConfig(const json::Value& root, const std::string& file, const std::string& baseDir,
                ServerConfig& config, Site& site, std::string& err);

}  // namespace kuai::server
