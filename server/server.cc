#include "server/server.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include "server/config_file.h"
#include "server/listener.h"
#include "server/reactor.h"

namespace kuai::server {

namespace {

std::vector<int> allowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int i = 0; i < CPU_SETSIZE; ++i) {
      if (CPU_ISSET(i, &set)) cpus.push_back(i);
    }
  }
  if (cpus.empty()) cpus.push_back(0);
  return cpus;
}

// SIGHUP: load the certificates again. Open connections keep the context they
// started with; new ones get the new one. A bad file keeps the old context.
void reloadTls(const ServerConfig& config, const std::vector<std::unique_ptr<Reactor>>& reactors) {
  if (!config.tls) {
    std::fprintf(stderr, "kuai: SIGHUP: nothing to reload\n");
    return;
  }
  std::string err;
  std::shared_ptr<tls::TlsContext> ctx = tls::createTlsContext(config.tlsConfig, err);
  if (!ctx) {
    std::fprintf(stderr, "kuai: SIGHUP: TLS reload failed, keeping the old certificates: %s\n",
                 err.c_str());
    return;
  }
  for (auto& r : reactors) r->setTlsContext(ctx);
  std::fprintf(stderr, "kuai: SIGHUP: certificates reloaded\n");
}

// SIGHUP with a config file: read it again; new requests use the new routes,
// requests in flight finish on the old ones. Listener changes need a restart.
void reloadSite(const ServerConfig& config, const std::vector<std::unique_ptr<Reactor>>& reactors) {
  ServerConfig fresh;
  std::string err;
  if (!loadConfigFile(config.configFile, fresh, err)) {
    std::fprintf(stderr, "kuai: SIGHUP: %s; keeping the old configuration\n", err.c_str());
    return;
  }
  const auto& before = config.site->listen;
  const auto& after = fresh.site->listen;
  bool sameListeners = before.size() == after.size();
  for (size_t i = 0; sameListeners && i < before.size(); ++i) {
    sameListeners = before[i].host == after[i].host && before[i].port == after[i].port &&
                    before[i].tls == after[i].tls;
  }
  // App scripts are loaded once per environment at start-up.
  auto apps = [](const Site& site) {
    std::vector<std::string> out;
    for (const RouteSpec& r : site.routes) {
      if (r.kind == RouteSpec::Kind::kApp) out.push_back(r.app);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  };
  if (apps(*config.site) != apps(*fresh.site)) {
    std::fprintf(stderr,
                 "kuai: SIGHUP: %s: the set of app scripts changed; new ones answer 503 until a "
                 "restart\n",
                 config.configFile.c_str());
  }
  std::vector<std::shared_ptr<tls::TlsContext>> contexts;
  if (sameListeners) {
    for (const ListenSpec& l : after) {
      std::shared_ptr<tls::TlsContext> ctx;
      if (l.tls) {
        ctx = tls::createTlsContext(l.tlsConfig, err);
        if (!ctx) {
          std::fprintf(stderr, "kuai: SIGHUP: %s: %s; keeping the old configuration\n",
                       config.configFile.c_str(), err.c_str());
          return;
        }
      }
      contexts.push_back(std::move(ctx));
    }
  } else {
    std::fprintf(stderr, "kuai: SIGHUP: %s: listeners changed; they take effect on restart\n",
                 config.configFile.c_str());
  }
  // The access log is opened again: a rotated file is let go.
  std::shared_ptr<AccessLog> log;
  if (!fresh.site->logging.accessLog.empty()) {
    log = AccessLog::open(fresh.site->logging.accessLog, err);
    if (!log) {
      std::fprintf(stderr, "kuai: SIGHUP: %s: logging.access: %s; keeping the old configuration\n",
                   config.configFile.c_str(), err.c_str());
      return;
    }
  }
  for (auto& r : reactors) r->setSite(fresh.site, contexts, log);
  std::fprintf(stderr, "kuai: SIGHUP: %s reloaded (%zu routes)\n", config.configFile.c_str(),
               fresh.site->routes.size());
}

}  // namespace

Server::Server(ServerConfig config, ThreadStart threadStart)
    : config_(std::move(config)), threadStart_(std::move(threadStart)) {}

Server::~Server() {
  stop();
  join();
}

bool Server::start(std::string& err) {
  std::vector<int> cpus = allowedCpus();
  ServerConfig& config = config_;
  if (config.threads <= 0) config.threads = int(cpus.size());

  if (config.serveStatic) {
    std::error_code ec;
    auto abs = std::filesystem::absolute(config.statics.root, ec);
    if (!ec) config.statics.root = abs.lexically_normal().string();
    if (config.statics.root.size() > 1 && config.statics.root.back() == '/') {
      config.statics.root.pop_back();
    }
  }

  IoBackend io = config.io;
  if (io != IoBackend::kEpoll) {
    std::string why;
    if (!uringAvailable(why)) {
      if (io == IoBackend::kUring) {
        err = "io_uring is not available here (" + why + "); try --io epoll";
        return false;
      }
      std::fprintf(stderr, "kuai: io_uring refused (%s): using epoll\n", why.c_str());
      io = IoBackend::kEpoll;
    } else {
      io = IoBackend::kUring;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);

  std::shared_ptr<tls::TlsContext> tlsContext;
  if (config.tls) {
    tlsContext = tls::createTlsContext(config.tlsConfig, err);
    if (!tlsContext) return false;
  }

  std::vector<int> fds;
  // A config file's listeners: every reactor gets a socket of each.
  std::vector<std::vector<int>> siteFds;
  std::vector<std::shared_ptr<tls::TlsContext>> siteTls;
  try {
    if (config.site) {
      siteListen_ = config.site->listen;  // port 0 becomes the one picked
      for (ListenSpec& l : siteListen_) {
        std::shared_ptr<tls::TlsContext> ctx;
        if (l.tls) {
          std::string why;
          ctx = tls::createTlsContext(l.tlsConfig, why);
          if (!ctx) {
            err = config.site->file + ": listen " + l.host + ":" + std::to_string(l.port) + ": " + why;
            for (auto& v : siteFds) for (int fd : v) ::close(fd);
            return false;
          }
        }
        siteTls.push_back(std::move(ctx));
        siteFds.push_back(openListeners(l.host, l.port, config.threads));
      }
    } else if (!config.scriptMode) {
      fds = openListeners(config.host, config.port, config.threads);
    }
  } catch (const std::exception& e) {
    for (auto& v : siteFds) for (int fd : v) ::close(fd);
    err = e.what();
    return false;
  }
  try {
    for (int i = 0; i < config.threads; ++i) {
      int fd = config.scriptMode || config.site ? -1 : fds[size_t(i)];
      reactors_.push_back(makeReactor(io, i, config_, fd, tlsContext));
      if (!fds.empty()) fds[size_t(i)] = -1;  // the reactor's now
      for (size_t k = 0; k < siteFds.size(); ++k) {
        reactors_.back()->addInitialListener(siteFds[k][size_t(i)], siteTls[k]);
        siteFds[k][size_t(i)] = -1;
      }
    }
  } catch (const std::exception& e) {  // a static root that is not there, ...
    reactors_.clear();
    for (int fd : fds) if (fd >= 0) ::close(fd);
    for (auto& v : siteFds) for (int fd : v) if (fd >= 0) ::close(fd);
    err = e.what();
    return false;
  }
  backend_ = reactors_.empty() ? "" : reactors_[0]->backendName();
  if (config.site) {
    std::shared_ptr<AccessLog> log;
    if (!config.site->logging.accessLog.empty()) {
      std::string why;
      log = AccessLog::open(config.site->logging.accessLog, why);
      if (!log) {
        err = config.site->file + ": logging.access: " + why;
        reactors_.clear();
        return false;
      }
    }
    for (auto& r : reactors_) r->setObservers(!config.site->logging.metricsPath.empty(), log);
  }

  // Each reactor sets up its backend on its own thread (an io_uring created with
  // SINGLE_ISSUER belongs to its creator) and reports before serving.
  std::vector<std::promise<std::string>> ready(reactors_.size());
  std::vector<std::future<std::string>> readyF;
  for (auto& p : ready) readyF.push_back(p.get_future());
  running_.store(int(reactors_.size()));
  for (size_t i = 0; i < reactors_.size(); ++i) {
    threads_.emplace_back([this, i, &cpus, &ready] { threadMain(i, cpus, ready[i]); });
  }
  std::string failure;
  for (auto& f : readyF) {
    std::string e = f.get();
    if (!e.empty() && failure.empty()) failure = e;
  }
  if (!failure.empty()) {
    stop();
    join();
    err = "cannot start: " + failure;
    return false;
  }
  return true;
}

void Server::threadMain(size_t i, const std::vector<int>& cpus, std::promise<std::string>& ready) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpus[i % cpus.size()], &one);
  ::pthread_setaffinity_np(::pthread_self(), sizeof(one), &one);
  std::string name = "kuai-r" + std::to_string(i);
  ::pthread_setname_np(::pthread_self(), name.c_str());
  Reactor& reactor = *reactors_[i];
  std::string err;
  bool ok = reactor.init(err);
  std::unique_ptr<LoopDriver> loop;
  if (ok && threadStart_) {
    loop = threadStart_(reactor, err);
    ok = loop != nullptr;
  }
  // (`cpus` and `ready` belong to start(), which returns once all have set theirs.)
  ready.set_value(ok ? std::string() : err);
  if (ok) {
    reactor.setLoopDriver(loop.get());
    reactor.run();
    reactor.setLoopDriver(nullptr);
    loop.reset();  // the environment goes on its own thread
  }
  if (--running_ == 0 && onFinished_) onFinished_();
}

void Server::printBanner() const {
  const ServerConfig& config = config_;
  if (config.site) {
    for (const ListenSpec& l : siteListen_) {
      bool six = l.host.find(':') != std::string::npos;
      std::printf("kuai: %s: serving %zu route%s on %s://%s:%d (%d thread%s, %s)\n",
                  config.site->file.c_str(), config.site->routes.size(),
                  config.site->routes.size() == 1 ? "" : "s", l.tls ? "https" : "http",
                  (six ? "[" + l.host + "]" : l.host).c_str(), l.port, config.threads,
                  config.threads == 1 ? "" : "s", backend_);
    }
  } else if (!config.scriptMode) {  // scripts print their own banners
    bool v6 = config.host.find(':') != std::string::npos;
    std::string url = std::string(config.tls ? "https://" : "http://") +
                      (v6 ? "[" + config.host + "]" : config.host) + ":" +
                      std::to_string(config.port);
    std::printf("kuai: serving %s on %s (%d thread%s, %s)\n",
                config.serveStatic ? config.statics.root.c_str() : "routes", url.c_str(),
                config.threads, config.threads == 1 ? "" : "s", backend_);
  }
  std::fflush(stdout);
}

void Server::stop() {
  for (auto& r : reactors_) r->requestStop();
}

void Server::reload() {
  if (config_.site) {
    reloadSite(config_, reactors_);
  } else {
    reloadTls(config_, reactors_);
  }
}

void Server::post(int index, std::function<void()> fn) {
  reactors_.at(size_t(index))->post(std::move(fn));
}

void Server::join() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

int runServer(ServerConfig config) {
  // Signals are taken by sigwait on this thread; reactors inherit the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  Server server(std::move(config));
  std::string err;
  if (!server.start(err)) {
    std::fprintf(stderr, "kuai: %s\n", err.c_str());
    return 1;
  }
  server.printBanner();

  bool stopping = false;
  timespec wait{0, 100'000'000};
  while (server.running() > 0) {
    int sig = ::sigtimedwait(&sigs, nullptr, &wait);
    if (sig == SIGINT || sig == SIGTERM) {
      if (stopping) {
        std::fprintf(stderr, "kuai: second signal, exiting now\n");
        std::_Exit(1);
      }
      stopping = true;
      server.stop();
    } else if (sig == SIGHUP) {
      server.reload();
    }
  }
  server.join();
  return 0;
}

}  // namespace kuai::server
