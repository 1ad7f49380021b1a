// A site with one route of each native kind, built by hand for the pipeline
// tests and fuzzer (no config file): in order,
//   /fixed   (exact) a fixed answer, kFixedBody
//   /app/    an app route for the script kTestApp (a 503 until a handler is
//            registered on the thread: ThreadContext::setAppHandler)
//   /proxy/  a proxy to 127.0.0.1:9, where nothing listens (MemoryReactor
//            refuses every outbound connection anyway): a 502
//   staticMount  static files from `root`
// Test code only.
#pragma once

#include <memory>
#include <string>

#include "server/site.h"

namespace kuai::server::testing {

inline constexpr char kFixedBody[] = "fixed body\n";
inline constexpr char kTestApp[] = "/srv/app.js";

std::shared_ptr<Site> routeKindsSite(const std::string& root, const std::string& staticMount);

}  // namespace kuai::server::testing
