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
void reloadTls(const ServerConfig& config, std::vector<std::unique_ptr<Reactor>>& reactors) {
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
void reloadSite(const ServerConfig& config, std::vector<std::unique_ptr<Reactor>>& reactors) {
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

int runServer(ServerConfig config, ThreadStart threadStart) {
  std::vector<int> cpus = allowedCpus();
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
        std::fprintf(stderr, "kuai: io_uring is not available here (%s); try --io epoll\n",
                     why.c_str());
        return 1;
      }
      std::fprintf(stderr, "kuai: io_uring refused (%s): using epoll\n", why.c_str());
      io = IoBackend::kEpoll;
    } else {
      io = IoBackend::kUring;
    }
  }

  // Signals are taken by sigwait on this thread; reactors inherit the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::shared_ptr<tls::TlsContext> tlsContext;
  if (config.tls) {
    std::string err;
    tlsContext = tls::createTlsContext(config.tlsConfig, err);
    if (!tlsContext) {
      std::fprintf(stderr, "kuai: %s\n", err.c_str());
      return 1;
    }
  }

  std::vector<int> fds;
  std::vector<std::unique_ptr<Reactor>> reactors;
  // A config file's listeners: every reactor gets a socket of each.
  std::vector<ListenSpec> siteListen;
  std::vector<std::vector<int>> siteFds;
  std::vector<std::shared_ptr<tls::TlsContext>> siteTls;
  try {
    if (config.site) {
      siteListen = config.site->listen;
      for (ListenSpec& l : siteListen) {
        std::shared_ptr<tls::TlsContext> ctx;
        if (l.tls) {
          std::string err;
          ctx = tls::createTlsContext(l.tlsConfig, err);
          if (!ctx) {
            std::fprintf(stderr, "kuai: %s: listen %s:%d: %s\n", config.site->file.c_str(),
                         l.host.c_str(), l.port, err.c_str());
            return 1;
          }
        }
        siteTls.push_back(std::move(ctx));
        siteFds.push_back(openListeners(l.host, l.port, config.threads));
      }
    } else if (!config.scriptMode) {
      fds = openListeners(config.host, config.port, config.threads);
    }
    for (int i = 0; i < config.threads; ++i) {
      int fd = config.scriptMode || config.site ? -1 : fds[i];
      reactors.push_back(makeReactor(io, i, config, fd, tlsContext));
      for (size_t k = 0; k < siteFds.size(); ++k) {
        reactors.back()->addInitialListener(siteFds[k][size_t(i)], siteTls[k]);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kuai: %s\n", e.what());
    return 1;
  }
  if (config.site) {
    std::shared_ptr<AccessLog> log;
    if (!config.site->logging.accessLog.empty()) {
      std::string err;
      log = AccessLog::open(config.site->logging.accessLog, err);
      if (!log) {
        std::fprintf(stderr, "kuai: %s: logging.access: %s\n", config.site->file.c_str(),
                     err.c_str());
        return 1;
      }
    }
    for (auto& r : reactors) r->setObservers(!config.site->logging.metricsPath.empty(), log);
  }

  // Each reactor sets up its backend on its own thread (an io_uring created with
  // SINGLE_ISSUER belongs to its creator) and reports before serving.
  std::vector<std::thread> threads;
  std::vector<std::promise<std::string>> ready(reactors.size());
  std::vector<std::future<std::string>> readyF;
  std::atomic<int> running{0};
  for (auto& p : ready) readyF.push_back(p.get_future());
  for (size_t i = 0; i < reactors.size(); ++i) {
    threads.emplace_back([&, i] {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpus[i % cpus.size()], &one);
      ::pthread_setaffinity_np(::pthread_self(), sizeof(one), &one);
      std::string name = "kuai-r" + std::to_string(i);
      ::pthread_setname_np(::pthread_self(), name.c_str());
      std::string err;
      bool ok = reactors[i]->init(err);
      std::unique_ptr<LoopDriver> loop;
      if (ok && threadStart) {
        ++running;
        loop = threadStart(*reactors[i], err);
        ok = loop != nullptr;
        if (!ok) --running;
      } else if (ok) {
        ++running;
      }
      ready[i].set_value(ok ? std::string() : err);
      if (!ok) return;
      reactors[i]->setLoopDriver(loop.get());
      reactors[i]->run();
      loop.reset();  // the environment goes on its own thread
      --running;
    });
  }
  std::string failure;
  for (auto& f : readyF) {
    std::string err = f.get();
    if (!err.empty() && failure.empty()) failure = err;
  }
  if (!failure.empty()) {
    std::fprintf(stderr, "kuai: cannot start: %s\n", failure.c_str());
    for (auto& r : reactors) r->requestStop();
    for (auto& t : threads) t.join();
    return 1;
  }

  bool v6 = config.host.find(':') != std::string::npos;
  if (config.site) {
    for (const ListenSpec& l : siteListen) {
      bool six = l.host.find(':') != std::string::npos;
      std::printf("kuai: %s: serving %zu route%s on %s://%s:%d (%d thread%s, %s)\n",
                  config.site->file.c_str(), config.site->routes.size(),
                  config.site->routes.size() == 1 ? "" : "s", l.tls ? "https" : "http",
                  (six ? "[" + l.host + "]" : l.host).c_str(), l.port, config.threads,
                  config.threads == 1 ? "" : "s", reactors[0]->backendName());
    }
    std::fflush(stdout);
  } else if (!config.scriptMode) {  // scripts print their own banners
    std::string url = std::string(config.tls ? "https://" : "http://") +
                      (v6 ? "[" + config.host + "]" : config.host) + ":" +
                      std::to_string(config.port);
    std::printf("kuai: serving %s on %s (%d thread%s, %s)\n",
                config.serveStatic ? config.statics.root.c_str() : "routes", url.c_str(),
                config.threads, config.threads == 1 ? "" : "s", reactors[0]->backendName());
    std::fflush(stdout);
  }

  bool stopping = false;
  timespec wait{0, 100'000'000};
  while (running.load() > 0 || !stopping) {
    int sig = ::sigtimedwait(&sigs, nullptr, &wait);
    if (sig == SIGINT || sig == SIGTERM) {
      if (stopping) {
        std::fprintf(stderr, "kuai: second signal, exiting now\n");
        std::_Exit(1);
      }
      stopping = true;
      for (auto& r : reactors) r->requestStop();
    } else if (sig == SIGHUP) {
      if (config.site) {
        reloadSite(config, reactors);
      } else {
        reloadTls(config, reactors);
      }
    }
    if (stopping && running.load() == 0) break;
    if (config.scriptMode && running.load() == 0) break;  // every script is done
  }
  for (auto& t : threads) t.join();
  return 0;
}

}  // namespace kuai::server
