// The kuai binary: parse the command line, then either serve natively (static
// files, proxy, TLS: no Node in this process) or hand over to the pinned node
// with the scripting addon, which parses the same arguments again and starts
// the reactors with a Node environment on each.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "scripting/config_evaluator.h"
#include "server/cli.h"
#include "server/config_file.h"
#include "server/log.h"
#include "server/node_runtime.h"
#include "server/server.h"
#include "server/site_config.h"
#include "server/upgrade.h"

namespace {

using kuai::server::CliResult;

bool hasAppRoutes(const kuai::server::ServerConfig& config) {
  if (!config.site) return false;
  for (const auto& route : config.site->routes) {
    if (route.kind == kuai::server::RouteSpec::Kind::kApp) return true;
  }
  return false;
}

int runNode(const std::vector<std::string>& args) {
  std::string err;
  kuai::server::execNode(args, err);
  kuai::server::logLine(kuai::server::LogLevel::kError, "kuai: %s\n", err.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  kuai::server::setConfigEvaluator(std::string(kuai::scripting::configEvaluatorSource()));
  std::vector<std::string> args(argv + 1, argv + argc);
  kuai::server::setUpgradeCommand(args);  // what SIGUSR2 starts
  // Nothing to run: Node's REPL on a terminal, else the script on stdin (as node).
  if (args.empty()) args.push_back(::isatty(0) ? "-i" : "-");
  CliResult cli = kuai::server::parseCommandLine(args);
  switch (cli.action) {
    case CliResult::Action::kHelp:
      std::fputs(kuai::server::usage().c_str(), stdout);
      return 0;
    case CliResult::Action::kVersion:
      std::printf("kuai %s\n", kuai::server::kVersion);
      return 0;
    case CliResult::Action::kError:
      kuai::server::logLine(kuai::server::LogLevel::kError, "kuai: %s\n", cli.error.c_str());
      return 2;
    case CliResult::Action::kServe: {
      kuai::server::ServerConfig& config = cli.config;
      std::string err;
      if (!kuai::server::resolveSite(config, err)) {
        kuai::server::logLine(kuai::server::LogLevel::kError, "kuai: %s\n", err.c_str());
        return 1;
      }
      if (!config.configFile.empty()) {
        if (config.checkConfigOnly) {
          size_t listeners = config.site->listen.size(), routes = config.site->routes.size();
          std::printf("kuai: %s: ok (%zu listener%s, %zu route%s)\n", config.configFile.c_str(), listeners,
                      listeners == 1 ? "" : "s", routes, routes == 1 ? "" : "s");
          return 0;
        }
      }
      if (!hasAppRoutes(config)) return kuai::server::runServer(std::move(config));
      break;  // app routes need a Node environment per reactor
    }
    case CliResult::Action::kScript:
      if (cli.config.checkSyntax) {
        // `kuai -c app.js` is `node --check app.js`: Node's own messages.
        std::vector<std::string> check = cli.config.nodeArgs;
        check.push_back("--check");
        check.push_back(cli.config.script);
        return runNode(check);
      }
      for (const std::string& o : cli.config.nodeArgs) {
        if (o == "--v8-options") return runNode({"--v8-options"});
      }
      break;
  }
  // node [Node's options] kuai.node ARGS: the addon reads ARGS as this did.
  std::vector<std::string> nodeArgs = cli.config.nodeArgs;
  nodeArgs.push_back(kuai::server::addonPath());
  nodeArgs.insert(nodeArgs.end(), args.begin(), args.end());
  return runNode(nodeArgs);
}
