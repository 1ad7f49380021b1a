// kuai.node: the scripting addon. The kuai binary runs `node [node options]
// kuai.node ARGS`; node loads this file as its main module, and its init here
// (on node's main thread, in node's main environment) parses ARGS as the kuai
// binary did, starts the reactors (each creates its own Node environment) and
// stays in node's event loop for the rest: signals (SIGTERM/SIGINT drain,
// SIGHUP reload), --watch (js/watch.js), and the end of the reactors.
#include <malloc.h>
#include <node.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "scripting/config_evaluator.h"
#include "scripting/embedded_js.h"
#include "scripting/environment.h"
#include "scripting/thread_scripting.h"
#include "scripting/v8_util.h"
#include "server/cli.h"
#include "server/config_file.h"
#include "server/log.h"
#include "server/node_runtime.h"
#include "server/sd_notify.h"
#include "server/server.h"
#include "server/upgrade.h"
#include "server/site_config.h"

namespace kuai::scripting {

namespace {

// The main thread's side of the server; lives until node exits.
struct Control {
  ScriptOptions options;
  std::unique_ptr<server::Server> server;
  v8::Isolate* isolate = nullptr;
  v8::Global<v8::Context> context;
  v8::Global<v8::Object> process;
  uv_signal_t sigint{}, sigterm{}, sighup{}, sigusr2{};
  uv_timer_t upgradeTimer{};  // while a new binary starts (SIGUSR2)
  uv_timer_t settleTimer{};   // once, after the reactors have started
  uv_async_t finished{}, filesAdded{}, reloadStep{};
  bool stopping = false;
  // --watch: environments are replaced one thread at a time.
  int reloadNext = -1;  // the next thread to replace; -1: none in progress
  bool reloadAgain = false;
  std::string reloadWhy;
  v8::Global<v8::Function> onFiles;  // watch.js's
};
Control* gControl = nullptr;

std::vector<std::string> stringArray(v8::Isolate* iso, v8::Local<v8::Context> ctx, v8::Local<v8::Value> v) {
  std::vector<std::string> out;
  if (!v->IsArray()) return out;
  v8::Local<v8::Array> a = v.As<v8::Array>();
  for (uint32_t i = 0; i < a->Length(); ++i) out.push_back(toStdString(iso, a->Get(ctx, i).ToLocalChecked()));
  return out;
}

void setExitCode(int code) {
  v8::Local<v8::Context> ctx = gControl->context.Get(gControl->isolate);
  gControl->process.Get(gControl->isolate)
      ->Set(ctx, str(gControl->isolate, "exitCode"), v8::Integer::New(gControl->isolate, code))
      .Check();
}

void closeHandles() {
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&gControl->sigint),
                         reinterpret_cast<uv_handle_t*>(&gControl->sigterm),
                         reinterpret_cast<uv_handle_t*>(&gControl->sighup),
                         reinterpret_cast<uv_handle_t*>(&gControl->sigusr2),
                         reinterpret_cast<uv_handle_t*>(&gControl->upgradeTimer),
                         reinterpret_cast<uv_handle_t*>(&gControl->settleTimer),
                         reinterpret_cast<uv_handle_t*>(&gControl->finished),
                         reinterpret_cast<uv_handle_t*>(&gControl->filesAdded),
                         reinterpret_cast<uv_handle_t*>(&gControl->reloadStep)}) {
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }
}

// Calls watch.js's onFiles(arg) from a libuv callback of the main loop.
void callOnFiles(v8::Local<v8::Value> arg) {
  Control& c = *gControl;
  if (c.onFiles.IsEmpty()) return;
  v8::Isolate* iso = c.isolate;
  v8::Local<v8::Context> ctx = c.context.Get(iso);
  v8::Context::Scope cs(ctx);
  node::CallbackScope scope(iso, v8::Object::New(iso), node::async_context{0, 0});
  v8::Local<v8::Value> argv[1] = {arg};
  // An exception thrown by the listener is reported by the callback scope.
  if (c.onFiles.Get(iso)->Call(ctx, v8::Undefined(iso), 1, argv).IsEmpty()) return;
}

// SIGUSR2: the new process's word is read every few milliseconds until it
// serves (this one then drains) or fails (this one goes on).
void upgradeTick(uv_timer_t* t) {
  Control& c = *gControl;
  if (!c.stopping && c.server->pollUpgrade()) c.stopping = true;
  if (c.server->upgradeFd() < 0) uv_timer_stop(t);
}

void onSignal(uv_signal_t*, int signum) {
  Control& c = *gControl;
  if (signum == SIGHUP) {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    server::notifySystemd("RELOADING=1\nMONOTONIC_USEC=" +
                          std::to_string(uint64_t(now.tv_sec) * 1'000'000 + uint64_t(now.tv_nsec) / 1000));
    c.server->reload();
    server::notifySystemd("READY=1\nSTATUS=serving");
    return;
  }
  if (signum == SIGUSR2) {
    if (c.stopping) {
      server::logLine(server::LogLevel::kWarning, "kuai: SIGUSR2: already stopping\n");
      return;
    }
    c.server->startUpgrade();
    if (c.server->upgradeFd() >= 0) uv_timer_start(&c.upgradeTimer, upgradeTick, 10, 10);
    return;
  }
  if (c.stopping) {
    server::logLine(server::LogLevel::kWarning, "kuai: second signal, exiting now\n");
    std::fflush(stdout);
    std::_Exit(1);
  }
  c.stopping = true;
  server::notifySystemd("STOPPING=1\nSTATUS=draining connections");
  c.server->abandonUpgrade();
  c.server->stop();
}

// Every reactor thread has ended (the scripts have nothing left to do, or a
// stop finished draining): node's own loop may end too.
void onFinished(uv_async_t*) {
  gControl->server->join();
  v8::HandleScope hs(gControl->isolate);
  if (int code = scriptExitCode()) setExitCode(code);
  callOnFiles(v8::Null(gControl->isolate));  // null: stop watching
  closeHandles();
}

// --watch: replaces the environments one thread at a time (the next one once
// the last is serving again).
void reloadStep(uv_async_t*) {
  Control& c = *gControl;
  if (c.reloadNext < 0) return;
  if (c.reloadNext >= c.server->threads()) {
    c.reloadNext = -1;
    if (c.reloadAgain) {
      c.reloadAgain = false;
      c.reloadNext = 0;
      uv_async_send(&c.reloadStep);
    }
    return;
  }
  int k = c.reloadNext++;
  std::string why = c.reloadWhy;
  c.server->post(k, [k, why] {
    ThreadScripting* ts = threadScripting(k);
    if (!ts) {
      uv_async_send(&gControl->reloadStep);
      return;
    }
    ts->requestReload(why, [] { uv_async_send(&gControl->reloadStep); });
  });
}

// watch.js: reload(why) replaces every environment.
void jsReload(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Control& c = *gControl;
  c.reloadWhy = toStdString(args.GetIsolate(), args[0]);
  if (c.stopping) return;
  if (c.reloadNext >= 0) {
    c.reloadAgain = true;
    return;
  }
  c.reloadNext = 0;
  uv_async_send(&c.reloadStep);
}

// Thread 0 loaded more files: hand the whole list to watch.js.
void filesAdded(uv_async_t*) {
  v8::Isolate* iso = gControl->isolate;
  v8::HandleScope hs(iso);
  v8::Local<v8::Context> ctx = gControl->context.Get(iso);
  std::vector<std::string> files = watchedFiles();
  v8::Local<v8::Array> a = v8::Array::New(iso, int(files.size()));
  for (size_t i = 0; i < files.size(); ++i) a->Set(ctx, uint32_t(i), str(iso, files[i])).Check();
  callOnFiles(a);
}

// Runs js/watch.js in node's main environment: it watches the directories of
// the files thread 0 loaded (or the --watch-path ones) and calls reload().
bool startWatching(v8::Local<v8::Context> ctx, const std::vector<std::string>& paths) {
  v8::Isolate* iso = gControl->isolate;
  const EmbeddedFile* src = findEmbeddedJs("watch.js");
  v8::ScriptOrigin origin(str(iso, "kuai:watch.js"));
  v8::Local<v8::Script> script;
  v8::Local<v8::Value> fn;
  if (!v8::Script::Compile(ctx, str(iso, std::string_view(src->data, src->size)), &origin).ToLocal(&script) ||
      !script->Run(ctx).ToLocal(&fn) || !fn->IsFunction()) {
    return false;
  }
  v8::Local<v8::Object> process = gControl->process.Get(iso);
  v8::Local<v8::Value> mainModule;
  v8::Local<v8::Object> b = v8::Object::New(iso);
  b->Set(ctx, str(iso, "reload"), v8::FunctionTemplate::New(iso, jsReload)->GetFunction(ctx).ToLocalChecked())
      .Check();
  v8::Local<v8::Array> list = v8::Array::New(iso, int(paths.size()));
  for (size_t i = 0; i < paths.size(); ++i) list->Set(ctx, uint32_t(i), str(iso, paths[i])).Check();
  b->Set(ctx, str(iso, "paths"), list).Check();
  // The main module's require (this addon is node's main module).
  v8::Local<v8::Value> req;
  if (!process->Get(ctx, str(iso, "mainModule")).ToLocal(&mainModule) || !mainModule->IsObject() ||
      !mainModule.As<v8::Object>()->Get(ctx, str(iso, "require")).ToLocal(&req) || !req->IsFunction()) {
    return false;
  }
  v8::Local<v8::Value> argv[3] = {process, req, b};
  v8::Local<v8::Value> onFiles;
  if (!fn.As<v8::Function>()->Call(ctx, v8::Undefined(iso), 3, argv).ToLocal(&onFiles) || !onFiles->IsFunction()) {
    return false;
  }
  gControl->onFiles.Reset(iso, onFiles.As<v8::Function>());
  return true;
}

std::string readAll(FILE* f) {
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  return out;
}

// What starting up left resident and will not use again, handed back once
// the reactors serve:
// - node's main environment ran the addon's start and is idle from now on
//   (signals, --watch): a full collection shrinks its heap;
// - the C heap's free memory at the top of each arena (malloc_trim);
// - node's executable pages that only startup touched (the snapshot's
//   deserializer, the bootstrap's compiler, the startup data). Mappings of
//   the executable holding no private copy of a page (all of its text and
//   read-only data; not the relocated or written ones) are dropped from the
//   page tables: the file stays in the page cache, and a page the serving
//   code needs comes back on its first touch (a minor fault, once).
void settle(uv_timer_t*) {
  Control& c = *gControl;
  c.isolate->LowMemoryNotification();
  ::malloc_trim(0);
  std::string self = server::executablePath();
  if (self.empty()) return;
  FILE* f = std::fopen("/proc/self/smaps", "r");
  if (!f) return;
  char line[4608];
  uintptr_t from = 0, to = 0;
  bool candidate = false;
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  while (std::fgets(line, sizeof(line), f)) {
    unsigned long a, b;
    char perms[5] = {};
    int pathAt = 0;
    if (std::sscanf(line, "%lx-%lx %4s %*s %*s %*s %n", &a, &b, perms, &pathAt) == 3 && pathAt > 0) {
      std::string_view path(line + pathAt);
      while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.remove_suffix(1);
      from = a;
      to = b;
      // Never written: text and read-only data.
      candidate = path == self && perms[1] == '-' && perms[3] == 'p';
    } else if (candidate && std::strncmp(line, "Anonymous:", 10) == 0) {
      if (std::strtoul(line + 10, nullptr, 10) == 0) ranges.emplace_back(from, to);
      candidate = false;
    }
  }
  std::fclose(f);
  for (auto [a, b] : ranges) ::madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
}

// V8 lets a busy isolate's young generation grow to 2 x 16 MiB. With one
// isolate per reactor that is up to 32 MiB per core held for garbage that
// dies within a request; under sustained load the extra room also lets more
// survivors reach the old generation between its collections (the soak in
// bench/results/soak: RSS stepping from ~106 to 147 MiB after 14 minutes on
// the default, 93-103 MiB throughout with 4 MiB semi-spaces at the same
// request rate). kuai caps a semi-space at 4 MiB for the environments it
// creates, unless the user sized the heap (on the command line or in
// NODE_OPTIONS). Called before the first reactor's isolate exists: V8 reads
// the flag when it sizes a new heap.
void capYoungGeneration(const std::vector<std::string>& execArgv) {
  auto sized = [](std::string_view text) {
    for (std::string_view flag : {"semi-space-size", "semi_space_size", "max-heap-size", "max_heap_size"}) {
      if (text.find(flag) != std::string_view::npos) return true;
    }
    return false;
  };
  for (const std::string& a : execArgv) {
    if (sized(a)) return;
  }
  if (const char* env = std::getenv("NODE_OPTIONS"); env && sized(env)) return;
  static constexpr char kFlag[] = "--max-semi-space-size=4";
  v8::V8::SetFlagsFromString(kFlag, sizeof(kFlag) - 1);
}

// Returns false with the exit code when the process should end at once.
bool run(v8::Local<v8::Context> ctx, int& exitCode) {
  v8::Isolate* iso = v8::Isolate::GetCurrent();
  v8::Local<v8::Object> global = ctx->Global();
  v8::Local<v8::Value> processValue = global->Get(ctx, str(iso, "process")).ToLocalChecked();
  v8::Local<v8::Object> process = processValue.As<v8::Object>();
  std::vector<std::string> argv = stringArray(iso, ctx, process->Get(ctx, str(iso, "argv")).ToLocalChecked());
  std::vector<std::string> args(argv.size() > 2 ? argv.begin() + 2 : argv.end(), argv.end());
  server::setUpgradeCommand(args);  // $KUAI_EXE (the kuai binary) with them, on SIGUSR2

  server::setConfigEvaluator(std::string(configEvaluatorSource()));
  server::CliResult cli = server::parseCommandLine(args);
  if (cli.action == server::CliResult::Action::kError) {
    server::logLine(server::LogLevel::kError, "kuai: %s\n", cli.error.c_str());
    exitCode = 2;
    return false;
  }
  server::ServerConfig config = std::move(cli.config);
  {
    std::string err;
    if (!server::resolveSite(config, err)) {
      server::logLine(server::LogLevel::kError, "kuai: %s\n", err.c_str());
      exitCode = 1;
      return false;
    }
  }

  gControl = new Control();
  Control& c = *gControl;
  c.isolate = iso;
  c.context.Reset(iso, ctx);
  c.process.Reset(iso, process);
  ScriptOptions& o = c.options;
  o.execPath = toStdString(iso, process->Get(ctx, str(iso, "execPath")).ToLocalChecked());
  o.execArgv = stringArray(iso, ctx, process->Get(ctx, str(iso, "execArgv")).ToLocalChecked());
  capYoungGeneration(o.execArgv);
  o.script = config.script;
  o.eval = config.evalStdin ? readAll(stdin) : config.eval;
  o.evalStdin = config.evalStdin;
  o.print = config.print;
  o.repl = config.repl;
  o.args = config.scriptArgs;
  o.requireModules = config.requireModules;
  o.imports = config.imports;
  o.inspect = config.inspect;
  o.watch = config.watch;
  o.cpuBudgetMs = config.cpuBudgetMs;
  o.serveHost = config.host;
  o.servePort = config.port;
  o.serveHostGiven = config.given.count("--host") > 0;
  o.servePortGiven = config.given.count("--port") > 0;
  if (config.site) {
    for (const auto& route : config.site->routes) {
      if (route.kind != server::RouteSpec::Kind::kApp) continue;
      if (std::find(o.apps.begin(), o.apps.end(), route.app) == o.apps.end()) o.apps.push_back(route.app);
    }
  }
  // Print and the REPL run once: one thread unless told otherwise.
  if (((o.repl && o.script.empty()) || o.print) && config.threads <= 0) config.threads = 1;
  std::vector<std::string> watchPaths = config.watchPaths;

  uv_loop_t* loop = node::GetCurrentEventLoop(iso);
  uv_async_init(loop, &c.finished, onFinished);
  uv_async_init(loop, &c.filesAdded, filesAdded);
  uv_async_init(loop, &c.reloadStep, reloadStep);
  uv_signal_init(loop, &c.sigint);
  uv_signal_init(loop, &c.sigterm);
  uv_signal_init(loop, &c.sighup);
  uv_signal_start(&c.sigint, onSignal, SIGINT);
  uv_signal_start(&c.sigterm, onSignal, SIGTERM);
  uv_signal_start(&c.sighup, onSignal, SIGHUP);
  uv_signal_init(loop, &c.sigusr2);
  uv_timer_init(loop, &c.upgradeTimer);
  uv_timer_init(loop, &c.settleTimer);
  // SIGUSR2 hands a site's listeners to a new binary; a script keeps Node's
  // meaning of it (its own handler, or the default).
  if (config.site) uv_signal_start(&c.sigusr2, onSignal, SIGUSR2);
  bool upgraded = server::startedByUpgrade();

  c.server = std::make_unique<server::Server>(
      std::move(config), [](server::Reactor& reactor, std::string& err) {
        return startEnvironment(reactor, gControl->options, err);
      });
  c.server->setOnFinished([] { uv_async_send(&gControl->finished); });
  if (o.watch) setWatchListener([] { uv_async_send(&gControl->filesAdded); });
  std::string err;
  if (!c.server->start(err)) {
    server::logLine(server::LogLevel::kError, "kuai: %s\n", err.c_str());
    closeHandles();
    exitCode = 1;
    return false;
  }
  c.server->printBanner();
  uv_timer_start(&c.settleTimer, settle, 1000, 0);
  uv_unref(reinterpret_cast<uv_handle_t*>(&c.settleTimer));
  if (upgraded) server::reportUpgradeReady();  // the old process tells systemd
  else server::notifySystemd("READY=1\nMAINPID=" + std::to_string(::getpid()) + "\nSTATUS=serving");
  if (o.watch && !startWatching(ctx, watchPaths)) {
    server::logLine(server::LogLevel::kError, "kuai: --watch: cannot start watching\n");
  }
  if (o.watch) uv_async_send(&c.filesAdded);
  return true;
}

}  // namespace

}  // namespace kuai::scripting

NODE_MODULE_INIT(/* exports, module, context */) {
  kuai::scripting::setPlatform(node::GetMultiIsolatePlatform(node::GetCurrentEnvironment(context)));
  int exitCode = 0;
  if (!kuai::scripting::run(context, exitCode)) {
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(exitCode);
  }
}
