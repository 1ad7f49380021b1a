// kuai's entry point: parse the command line, then hand over to the server.
#include <cstdio>
#include <string>
#include <vector>

#include "server/cli.h"
#include "server/server.h"

int main(int argc, char** argv) {
  using kuai::server::CliResult;
  std::vector<std::string> args(argv + 1, argv + argc);
  CliResult cli = kuai::server::parseCommandLine(args);
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
      break;
  }
  return kuai::server::runServer(std::move(cli.config));
}
