// kuai's entry point: parse the command line, set up Node for script mode, then
// hand over to the server.
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifndef KUAI_NO_SCRIPTING
#include <node.h>

#include "scripting/environment.h"
#endif
#include "server/cli.h"
#include "server/config_file.h"
#include "server/reactor.h"
#include "server/server.h"

#ifndef KUAI_NO_SCRIPTING
// `kuai-node --kuai-eval-config FILE`, run by kuai to evaluate a .js config
// file: plain Node running the evaluator (`node -e SOURCE FILE`), which prints
// the exported config as JSON. The arguments are laid out in one block, as
// libuv expects of argv.
static int evalConfigMain(char* argv0, const char* file) {
  const char* parts[] = {argv0, "-e", kuai::server::kConfigEvaluatorSource, file};
  constexpr int n = 4;
  std::string block;
  for (const char* p : parts) block.append(p, std::strlen(p) + 1);
  std::vector<char*> args;
  char* cursor = block.data();
  for (int i = 0; i < n; ++i) {
    args.push_back(cursor);
    cursor += std::strlen(cursor) + 1;
  }
  args.push_back(nullptr);
  return node::Start(n, args.data());
}
#endif

int main(int argc, char** argv) {
  using kuai::server::CliResult;
#ifndef KUAI_NO_SCRIPTING
  if (argc == 3 && std::strcmp(argv[1], "--kuai-eval-config") == 0) return evalConfigMain(argv[0], argv[2]);
#endif
  std::vector<std::string> args(argv + 1, argv + argc);
  CliResult cli = kuai::server::parseCommandLine(args);
  bool appRoutes = false;
  switch (cli.action) {
    case CliResult::Action::kHelp:
      std::fputs(kuai::server::usage().c_str(), stdout);
      return 0;
    case CliResult::Action::kVersion:
      std::printf("kuai %s\n", kuai::server::kVersion);
      return 0;
    case CliResult::Action::kError:
      std::fprintf(stderr, "kuai: %s\n", cli.error.c_str());
      return 2;
    case CliResult::Action::kServe:
      if (!cli.config.configFile.empty()) {
        std::string err;
        if (!kuai::server::loadConfigFile(cli.config.configFile, cli.config, err)) {
          std::fprintf(stderr, "kuai: %s\n", err.c_str());
          return 1;
        }
        if (cli.config.checkConfigOnly) {
          size_t listeners = cli.config.site->listen.size(), routes = cli.config.site->routes.size();
          std::printf("kuai: %s: ok (%zu listener%s, %zu route%s)\n", cli.config.configFile.c_str(), listeners,
                      listeners == 1 ? "" : "s", routes, routes == 1 ? "" : "s");
          return 0;
        }
      }
      for (const auto& route : cli.config.site ? cli.config.site->routes
                                                : std::vector<kuai::server::RouteSpec>{}) {
        if (route.kind == kuai::server::RouteSpec::Kind::kApp) {
          appRoutes = true;
          break;
        }
      }
      if (!appRoutes) return kuai::server::runServer(std::move(cli.config));
      break;  // app routes need a Node environment per reactor
    case CliResult::Action::kScript:
      break;
  }

#ifdef KUAI_NO_SCRIPTING
  // Scripts run in kuai-node, the build with libnode, found beside this binary.
  std::string node;
  if (const char* env = std::getenv("KUAI_NODE_BINARY"); env && *env) {
    node = env;
  } else {
    char exe[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
      exe[n] = 0;
      node = std::string(exe, size_t(n));
      node = node.substr(0, node.rfind('/') + 1) + "kuai-node";
    }
  }
  ::execv(node.c_str(), argv);
  std::fprintf(stderr, "kuai: cannot run scripts: %s: %s\n", node.c_str(), std::strerror(errno));
  return 2;
#else
  kuai::scripting::ScriptOptions options;
  options.script = cli.config.script;
  options.eval = cli.config.eval;
  options.args = cli.config.scriptArgs;
  options.nodeArgs = cli.config.nodeArgs;
  options.cpuBudgetMs = cli.config.cpuBudgetMs;
  if (appRoutes) {
    // A config file's app routes: each thread's environment loads every app
    // script; requests for a route go to the handler its script exports.
    for (const auto& route : cli.config.site->routes) {
      if (route.kind != kuai::server::RouteSpec::Kind::kApp) continue;
      bool seen = false;
      for (const std::string& a : options.apps) seen = seen || a == route.app;
      if (!seen) options.apps.push_back(route.app);
    }
  }
  std::string err;
  int exitCode = -1;
  if (!kuai::scripting::initializeNode(argv[0], options, err, exitCode)) {
    if (!err.empty()) std::fprintf(stderr, "kuai: %s\n", err.c_str());
    return exitCode >= 0 ? exitCode : 9;
  }
  int rc = kuai::server::runServer(
      std::move(cli.config),
      [&options](kuai::server::Reactor& reactor, std::string& error) {
        return kuai::scripting::startEnvironment(reactor, options, error);
      });
  if (rc == 0) rc = kuai::scripting::scriptExitCode();
  kuai::scripting::shutdownNode();
  return rc;
#endif
}
