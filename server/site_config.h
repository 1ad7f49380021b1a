// One configuration model: turns what the command line parsed (ServerConfig)
// into the Site the reactors serve. With --config FILE the file gives the
// site and the settings, and every option given on the command line overrides
// them; without one, `kuai serve DIR` is a site of its own (one listener,
// the --respond routes, then one static route for DIR). Script mode has no
// routes: scripts listen themselves (app routes come with a config file).
#pragma once

#include <string>

#include "server/config.h"

namespace kuai::server {

// Fills config.site (and, from a file, its settings). False with `err` (one
// line for people, naming the file and key path where it applies).
bool resolveSite(ServerConfig& config, std::string& err);

}  // namespace kuai::server
