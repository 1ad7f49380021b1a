#include "server/server.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "server/config_file.h"
#include "server/log.h"
#include "server/site_config.h"
#include "server/listener.h"
#include "server/reactor.h"
#include "server/sd_notify.h"

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

// The set of app scripts a site loads (they load once per environment).
std::vector<std::string> appScripts(const Site& site) {
  std::vector<std::string> out;
  for (const RouteSpec& r : site.routes) {
    if (r.kind == RouteSpec::Kind::kApp) out.push_back(r.app);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

Server::Server(ServerConfig config, ThreadStart threadStart)
    : config_(std::move(config)), threadStart_(std::move(threadStart)) {
  // Output buffers of a few hundred KiB (TLS records, HTTP/2 frames, large
  // bodies) come and go on every busy connection. glibc would map each one
  // fresh and unmap it when freed (its mmap threshold starts at 128 KiB, and
  // the reactors' arenas give free memory back early), so every burst paid
  // for page faults again: up to 8x the CPU per 1 MiB response over TLS until
  // the thresholds had adapted. Fixed thresholds keep that memory in the
  // arenas for reuse.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
}

Server::~Server() {
  stop();
  join();
}

bool Server::start(std::string& err) {
  std::vector<int> cpus = allowedCpus();
  ServerConfig& config = config_;
  if (config.threads <= 0) config.threads = int(cpus.size());

  IoBackend io = config.io;
  if (io != IoBackend::kEpoll) {
    std::string why;
    if (!uringAvailable(why)) {
      if (io == IoBackend::kUring) {
        err = "io_uring is not available here (" + why + "); try --io epoll";
        return false;
      }
      logLine(LogLevel::kWarning, "kuai: io_uring refused (%s): using epoll\n", why.c_str());
      io = IoBackend::kEpoll;
    } else {
      io = IoBackend::kUring;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);

  // The site's listeners: every reactor gets a socket of each (or more than
  // one, where more sockets were passed in than there are reactors).
  std::vector<std::vector<std::vector<int>>> siteFds;
  std::vector<bool> siteShared;
  std::vector<std::shared_ptr<tls::TlsContext>> siteTls;
  auto closeAll = [&] {
    for (auto& perReactor : siteFds) {
      for (auto& fds : perReactor) {
        for (int fd : fds) if (fd >= 0) ::close(fd);
      }
    }
    handoverFds_.clear();
  };
  if (config.site) {
    siteListen_ = config.site->listen;  // port 0 becomes the one picked
    try {
      for (ListenSpec& l : siteListen_) {
        std::shared_ptr<tls::TlsContext> ctx;
        if (l.tls) {
          std::string why;
          ctx = tls::createTlsContext(listenerTlsConfig(l), why);
          if (!ctx) {
            err = config.site->file.empty()
                      ? why
                      : config.site->file + ": listen " + l.host + ":" + std::to_string(l.port) + ": " + why;
            closeAll();
            return false;
          }
        }
        siteTls.push_back(std::move(ctx));
        // Socket activation (or an upgrade): the sockets passed for this
        // address; else our own.
        std::vector<std::vector<int>> perReactor = InheritedSockets::get().take(l.host, l.port, config.threads);
        bool shared = !perReactor.empty();
        if (!shared) {
          for (int fd : openListeners(l.host, l.port, config.threads)) perReactor.push_back({fd});
        }
        if (config.sticky && perReactor.size() > 1) {
          std::string why;
          if (shared) {
            // Sockets passed in (socket activation, an upgrade): an upgrade's
            // group keeps the program the old process attached; a socket
            // shared by every reactor cannot be steered.
            if (!steerByClientAddress(perReactor[0][0], unsigned(perReactor.size()), why)) {
              logLine(LogLevel::kWarning, "kuai: warning: --sticky: %s:%d: %s (the socket passed in is shared)\n",
                      l.host.c_str(), l.port, why.c_str());
            }
          } else if (!steerByClientAddress(perReactor[0][0], unsigned(perReactor.size()), why)) {
            err = "listen " + l.host + ":" + std::to_string(l.port) + ": " + why;
            for (const auto& fds : perReactor) ::close(fds[0]);
            closeAll();
            return false;
          }
        }
        // What a SIGUSR2 upgrade passes on: each socket once (reactors that
        // share one hold duplicates of it, with the same inode).
        std::set<ino_t> seen;
        for (const auto& fds : perReactor) {
          for (int fd : fds) {
            struct stat st {};
            if (::fstat(fd, &st) == 0 && seen.insert(st.st_ino).second) handoverFds_.push_back(fd);
          }
        }
        siteFds.push_back(std::move(perReactor));
        siteShared.push_back(shared);
      }
      if (InheritedSockets::get().any()) {
        std::string list;
        for (const std::string& s : InheritedSockets::get().unused()) list += (list.empty() ? "" : ", ") + s;
        logLine(LogLevel::kWarning, "kuai: warning: socket activation passed sockets no listener uses: %s\n", list.c_str());
        InheritedSockets::get().closeUnused();
      }
    } catch (const std::exception& e) {
      closeAll();
      err = e.what();
      return false;
    }
  }
  try {
    for (int i = 0; i < config.threads; ++i) {
      reactors_.push_back(makeReactor(io, i, config_));
      for (size_t k = 0; k < siteFds.size(); ++k) {
        for (int& fd : siteFds[k][size_t(i)]) {
          reactors_.back()->addInitialListener(fd, siteTls[k], siteListen_[k].http2 == Http2::kH2c, siteShared[k]);
          fd = -1;
        }
      }
    }
  } catch (const std::exception& e) {  // a static root that is not there, ...
    reactors_.clear();
    closeAll();
    err = e.what();
    return false;
  }
  backend_ = reactors_.empty() ? "" : reactors_[0]->backendName();
  if (config.site && (!config.site->logging.accessLog.empty() || !config.site->logging.metricsPath.empty())) {
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
    for (auto& r : reactors_) r->context().setObservers(!config.site->logging.metricsPath.empty(), log);
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
  // Routes and pools go, and the access log's last lines are handed over (the
  // last reactor to let go of the log waits for them to be written): a host
  // process may end before the reactors are destroyed.
  reactor.context().shutdown();
  if (--running_ == 0 && onFinished_) onFinished_();
}

void Server::printBanner() const {
  const ServerConfig& config = config_;
  if (!config.site) return;  // scripts print their own banners
  auto url = [](const ListenSpec& l) {
    bool six = l.host.find(':') != std::string::npos;
    return std::string(l.tls ? "https://" : "http://") + (six ? "[" + l.host + "]" : l.host) + ":" +
           std::to_string(l.port);
  };
  for (const ListenSpec& l : siteListen_) {
    if (!config.site->file.empty()) {
      std::printf("kuai: %s: serving %zu route%s on %s (%d thread%s, %s)\n", config.site->file.c_str(),
                  config.site->routes.size(), config.site->routes.size() == 1 ? "" : "s", url(l).c_str(),
                  config.threads, config.threads == 1 ? "" : "s", backend_);
    } else {
      const RouteSpec& files = config.site->routes.back();  // kuai serve DIR: the static route
      std::printf("kuai: serving %s on %s (%d thread%s, %s)\n", files.statics.root.c_str(), url(l).c_str(),
                  config.threads, config.threads == 1 ? "" : "s", backend_);
    }
  }
  std::fflush(stdout);
}

void Server::stop() {
  for (auto& r : reactors_) r->send(StopMessage{});
}

// SIGHUP: the site again, from its sources (the config file, the command
// line's certificates). New requests use the new routes and new connections
// the new certificates; requests in flight finish on the old ones; a broken
// file keeps the old site. Listener changes need a restart.
void Server::reload() {
  const std::string& file = config_.configFile;
  const char* keeping = file.empty() ? "" : "; keeping the old configuration";
  ServerConfig fresh = config_;
  fresh.site.reset();
  std::string err;
  if (!resolveSite(fresh, err)) {
    logLine(LogLevel::kError, "kuai: SIGHUP: %s%s\n", err.c_str(), keeping);
    return;
  }
  if (!fresh.site) {
    logLine(LogLevel::kNotice, "kuai: SIGHUP: nothing to reload\n");
    return;
  }
  const Site& before = *config_.site;
  const Site& after = *fresh.site;
  if (file.empty()) {
    bool anyTls = false;
    for (const ListenSpec& l : after.listen) anyTls = anyTls || l.tls;
    if (!anyTls) {
      logLine(LogLevel::kNotice, "kuai: SIGHUP: nothing to reload\n");
      return;
    }
  }
  bool sameListeners = before.listen.size() == after.listen.size();
  for (size_t i = 0; sameListeners && i < before.listen.size(); ++i) {
    sameListeners = before.listen[i].host == after.listen[i].host &&
                    (before.listen[i].port == after.listen[i].port || before.listen[i].port == 0) &&
                    before.listen[i].tls == after.listen[i].tls;
  }
  if (!file.empty() && appScripts(before) != appScripts(after)) {
    logLine(LogLevel::kWarning, "kuai: SIGHUP: %s: the set of app scripts changed; new ones answer 503 until a restart\n",
                 file.c_str());
  }
  std::vector<std::shared_ptr<tls::TlsContext>> contexts;
  if (sameListeners) {
    for (const ListenSpec& l : after.listen) {
      std::shared_ptr<tls::TlsContext> ctx;
      if (l.tls) {
        ctx = tls::createTlsContext(listenerTlsConfig(l), err);
        if (!ctx) {
          if (file.empty()) {
            logLine(LogLevel::kError, "kuai: SIGHUP: TLS reload failed, keeping the old certificates: %s\n", err.c_str());
          } else {
            logLine(LogLevel::kError, "kuai: SIGHUP: %s: %s%s\n", file.c_str(), err.c_str(), keeping);
          }
          return;
        }
      }
      contexts.push_back(std::move(ctx));
    }
  } else {
    logLine(LogLevel::kWarning, "kuai: SIGHUP: %s: listeners changed; they take effect on restart\n", file.c_str());
  }
  // The access log is opened again: a rotated file is let go.
  std::shared_ptr<AccessLog> log;
  if (!after.logging.accessLog.empty()) {
    log = AccessLog::open(after.logging.accessLog, err);
    if (!log) {
      logLine(LogLevel::kError, "kuai: SIGHUP: %s: logging.access: %s%s\n", file.c_str(), err.c_str(), keeping);
      return;
    }
  }
  for (auto& r : reactors_) r->send(SiteMessage{fresh.site, contexts, log});
  config_.site = fresh.site;
  if (file.empty()) {
    logLine(LogLevel::kInfo, "kuai: SIGHUP: certificates reloaded\n");
  } else {
    logLine(LogLevel::kInfo, "kuai: SIGHUP: %s reloaded (%zu routes)\n", file.c_str(), after.routes.size());
  }
}

void Server::post(int index, std::function<void()> fn) {
  reactors_.at(size_t(index))->send(TaskMessage{std::move(fn)});
}

void Server::startUpgrade() {
  if (!config_.site) {
    logLine(LogLevel::kWarning, "kuai: SIGUSR2: an upgrade hands over a site's listeners; a script's are its own\n");
    return;
  }
  std::string err;
  if (!upgrade_.start(handoverFds_, err)) {
    logLine(LogLevel::kError, "kuai: SIGUSR2: cannot start the new binary: %s\n", err.c_str());
    return;
  }
  logLine(LogLevel::kInfo, "kuai: SIGUSR2: starting %s (pid %d) on the %zu listening socket%s\n",
               upgradeExecutable().c_str(), int(upgrade_.pid()), handoverFds_.size(),
               handoverFds_.size() == 1 ? "" : "s");
}

void Server::abandonUpgrade() {
  if (!upgrade_.inProgress()) return;
  logLine(LogLevel::kWarning, "kuai: stopping: the new process (pid %d) had not started serving; it is stopped too\n",
          int(upgrade_.pid()));
  upgrade_.abandon();
}

bool Server::pollUpgrade() {
  pid_t pid = upgrade_.pid();
  std::string why;
  switch (upgrade_.poll(why)) {
    case BinaryUpgrade::Outcome::kPending:
      return false;
    case BinaryUpgrade::Outcome::kFailed:
      logLine(LogLevel::kError, "kuai: SIGUSR2: the new process did not start (%s); still serving\n", why.c_str());
      return false;
    case BinaryUpgrade::Outcome::kReady:
      break;
  }
  logLine(LogLevel::kInfo, "kuai: SIGUSR2: pid %d serves; pid %d drains and exits\n", int(pid), int(::getpid()));
  // The new process is the service's main one from now on; what this one
  // sends after is not its business (and is refused by systemd).
  notifySystemd("MAINPID=" + std::to_string(pid) + "\nREADY=1\nSTATUS=serving");
  setListenersHandedOver();
  stop();
  return true;
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
  sigaddset(&sigs, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  bool upgraded = startedByUpgrade();
  Server server(std::move(config));
  std::string err;
  if (!server.start(err)) {
    logLine(LogLevel::kError, "kuai: %s\n", err.c_str());
    return 1;
  }
  server.printBanner();
  // Started by an upgrade: the old process tells systemd once told we serve.
  if (upgraded) reportUpgradeReady();
  else notifySystemd("READY=1\nMAINPID=" + std::to_string(::getpid()) + "\nSTATUS=serving");

  bool stopping = false;
  while (server.running() > 0) {
    // (Shorter waits while a new binary starts: its word is read between them.)
    timespec wait{0, server.upgradeFd() >= 0 ? 10'000'000 : 100'000'000};
    int sig = ::sigtimedwait(&sigs, nullptr, &wait);
    if (!stopping && server.upgradeFd() >= 0 && server.pollUpgrade()) stopping = true;
    if (sig == SIGUSR2) {
      if (stopping) logLine(LogLevel::kWarning, "kuai: SIGUSR2: already stopping\n");
      else server.startUpgrade();
    } else if (sig == SIGINT || sig == SIGTERM) {
      if (stopping) {
        logLine(LogLevel::kWarning, "kuai: second signal, exiting now\n");
        std::_Exit(1);
      }
      stopping = true;
      notifySystemd("STOPPING=1\nSTATUS=draining connections");
      server.abandonUpgrade();
      server.stop();
    } else if (sig == SIGHUP) {
      timespec now{};
      ::clock_gettime(CLOCK_MONOTONIC, &now);
      notifySystemd("RELOADING=1\nMONOTONIC_USEC=" +
                    std::to_string(uint64_t(now.tv_sec) * 1'000'000 + uint64_t(now.tv_nsec) / 1000));
      server.reload();
      notifySystemd("READY=1\nSTATUS=serving");
    }
  }
  server.join();
  return 0;
}

}  // namespace kuai::server
