// Where the pinned Node.js and kuai's scripting addon are, and how the kuai
// binary hands a script over to them: `node [node options] kuai.node ARGS`.
// The kuai binary never loads Node itself (static files, TLS and the proxy need
// none of it).
#pragma once

#include <string>
#include <vector>

namespace kuai::server {

// The node that runs scripts and evaluates .js config files:
// $KUAI_NODE_BINARY, else the one the build put beside this executable
// (kuai.runfiles/node/bin/node under Bazel, ../lib/kuai/node/bin/node when
// installed). Returned whether or not it exists.
std::string nodeBinaryPath();
// This process's executable (/proc/self/exe), or "" if it cannot be read.
std::string executablePath();
// The scripting addon: $KUAI_ADDON, else kuai.node beside this executable (or
// ../lib/kuai/kuai.node).
std::string addonPath();

// Replaces this process with `node ARGS` (argv[0] is the node path). In a
// sanitizer build the sanitizer runtime this binary uses is preloaded, as the
// addon (built with it) needs. Returns only on failure, with `err` set.
void execNode(const std::vector<std::string>& args, std::string& err);

}  // namespace kuai::server
