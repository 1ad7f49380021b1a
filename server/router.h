// Router: picks the handler for a request and writes its response through the
// Connection. One per reactor (its StaticFiles cache is that thread's own).
// Native handlers today: fixed responses (--respond) and static files; the JS
// and proxy handlers plug in here.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "parser/request_parser.h"
#include "server/config.h"
#include "server/static_files.h"

namespace kuai::server {

class Connection;

class Router {
 public:
  explicit Router(const ServerConfig& config);
  ~Router();

  void handle(const parser::Request& req, Connection& conn);

 private:
  struct Fixed {
    std::string path;
    std::string headers;  // preformatted header lines
    std::string body;
  };

  const ServerConfig& config_;
  std::vector<Fixed> fixed_;
  std::unique_ptr<StaticFiles> static_;
  StaticResponse scratch_;  // reused for every static response
};

}  // namespace kuai::server
