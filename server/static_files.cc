// StaticFiles: target decoding and normalisation, confined opening (openat2
// RESOLVE_BENEATH), the per-reactor open-file cache, conditional requests and
// byte ranges (one, or several as multipart/byteranges). See static_files.h
// for the ownership rules.
//
// Choices worth knowing:
// - Paths with a dot segment (.env, .git/) answer 404 unless dotfiles are
//   allowed (StaticOptions::dotfiles); /.well-known/ is always served.
// - A symlink is followed only while it stays beneath the root. Absolute
//   symlinks are refused by RESOLVE_BENEATH even when they point inside the root;
//   both kinds of refusal answer 404, as does an encoded '/' or a backslash.
// - Files are opened O_NONBLOCK|O_NOCTTY so that a fifo under the root cannot
//   stall the reactor; anything that is not a regular file or a directory
//   answers 403.
// - Generated bodies (errors, redirects, listings) are in `owned`, and `memory`
//   views the same bytes: a string literal for the fixed texts, or owned's heap
//   buffer for listings (always longer than the small-string buffer, so moving
//   the response keeps the view valid).
#include "server/static_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "parser/http_common.h"
#include "server/byte_ranges.h"
#include "server/http_dates.h"
#include "server/mime_types.h"

namespace kuai::server {

// Tests set this to exercise the openat + real-path fallback on kernels that
// have openat2. Not part of the API.
bool gStaticFilesForceOpenatFallback = false;

void OpenFile::mapWhole() {
  if (map || fd < 0 || size == 0 || size > SIZE_MAX) return;
  void* m = ::mmap(nullptr, size_t(size), PROT_READ, MAP_SHARED, fd, 0);
  if (m != MAP_FAILED) map = static_cast<const char*>(m);
}

OpenFile::~OpenFile() {
  if (map) ::munmap(const_cast<char*>(map), size_t(size));
  if (fd >= 0) ::close(fd);
}

// One cached path: a regular file (its bytes in `body`, or its fd in `file`) or
// a directory (only its identity, for the trailing-slash redirect). Owned by the
// cache map and by every response still holding it through `hold`; immutable
// once built, except for checkedAt and the LRU node.
struct StaticFiles::Entry {
  std::string key;
  std::list<Entry*>::iterator lru;
  bool isDir = false;
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t size = 0;
  timespec mtime{};
  time_t checkedAt = 0;
  std::shared_ptr<OpenFile> file;  // files above memoryCacheMax
  std::string body;                // files up to memoryCacheMax
  // "ETag: ..\r\nLast-Modified: ..\r\nContent-Type: ..\r\nAccept-Ranges: bytes\r\n";
  // the first validatorsLen bytes are the two validator lines (for 304).
  std::string headers;
  size_t validatorsLen = 0;
  std::string_view etag;          // view into headers, quotes included
  std::string_view contentType;   // the MIME table's (static storage)
};

namespace {

constexpr std::string_view kTextPlain = "Content-Type: text/plain; charset=utf-8\r\n";
constexpr std::string_view kTextHtml = "Content-Type: text/html; charset=utf-8\r\n";

// Sentinel errno for "exists but is not a regular file or directory".
constexpr int kNotRegular = EACCES;

std::string_view statusBody(int status) {
  switch (status) {
    case 301: return "301 Moved Permanently\n";
    case 400: return "400 Bad Request\n";
    case 403: return "403 Forbidden\n";
    case 404: return "404 Not Found\n";
    case 405: return "405 Method Not Allowed\n";
    case 416: return "416 Range Not Satisfiable\n";
    case 503: return "503 Service Unavailable\n";
    default: return "500 Internal Server Error\n";
  }
}

int statusForErrno(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case EXDEV:          // RESOLVE_BENEATH: would leave the root
    case ELOOP:
    case ENAMETOOLONG:
      return 404;
    case EACCES:
    case EPERM:
      return 403;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
      return 503;
    default:
      return 500;
  }
}

// Fixed-text error: the body is a literal, so `memory` can never dangle.
void setError(StaticResponse& out, int status) {
  std::string_view body = statusBody(status);
  out.status = status;
  out.cachedHeaders = kTextPlain;
  out.owned.assign(body);
  out.memory = body;
  out.file.reset();
  out.fileOffset = 0;
  out.contentLength = body.size();
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes the path part of the target into `out`. Returns 0, or the
// status to answer: 400 for NUL or a bad escape, 404 for a slash or backslash
// that would change how the path splits.
int decodePath(std::string_view raw, std::string& out) {
  out.clear();
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '%') {
      if (i + 2 >= raw.size()) return 400;
      int hi = hexValue(raw[i + 1]);
      int lo = hexValue(raw[i + 2]);
      if (hi < 0 || lo < 0) return 400;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
      if (c == '/') return 404;
    }
    if (c == '\0') return 400;
    if (c == '\\') return 404;
    out.push_back(c);
  }
  return 0;
}

// Resolves "." and ".." segments and collapses empty ones. `in` starts with
// '/'; `out` gets the path relative to the root, without leading or trailing
// slash ("" for the root). Returns 0, or 403 when ".." would climb above the
// root. `dirForm` tells whether the target names a directory ("/a/", "/a/.").
// Whether a normalised path ("a/b.txt") has a segment that starts with a dot,
// /.well-known/ aside.
bool dotPath(std::string_view rel) {
  constexpr std::string_view kWellKnown = ".well-known";
  size_t at = 0;
  if (rel.substr(0, kWellKnown.size()) == kWellKnown &&
      (rel.size() == kWellKnown.size() || rel[kWellKnown.size()] == '/')) {
    at = kWellKnown.size() + 1;
  }
  while (at < rel.size()) {
    if (rel[at] == '.') return true;
    size_t slash = rel.find('/', at);
    if (slash == std::string_view::npos) break;
    at = slash + 1;
  }
  return false;
}

int normalisePath(std::string_view in, std::string& out, bool& dirForm) {
  out.clear();
  dirForm = false;
  size_t pos = 1;
  while (pos <= in.size()) {
    size_t next = in.find('/', pos);
    if (next == std::string_view::npos) next = in.size();
    std::string_view seg = in.substr(pos, next - pos);
    bool last = next == in.size();
    if (seg.empty() || seg == ".") {
      if (last) dirForm = true;
    } else if (seg == "..") {
      if (out.empty()) return 403;
      size_t cut = out.rfind('/');
      out.resize(cut == std::string::npos ? 0 : cut);
      if (last) dirForm = true;
    } else {
      if (!out.empty()) out.push_back('/');
      out.append(seg);
    }
    pos = next + 1;
  }
  return 0;
}

bool isUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_' || c == '~';
}

void appendPercent(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out.push_back('%');
  out.push_back(kHex[c >> 4]);
  out.push_back(kHex[c & 15]);
}

// Everything but unreserved characters (and '/' when keepSlash) is escaped, so a
// name such as "javascript:x" can never read as a scheme in a relative href.
void appendUrlEncoded(std::string& out, std::string_view s, bool keepSlash) {
  for (unsigned char c : s) {
    if (isUnreserved(c) || (keepSlash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      appendPercent(out, c);
    }
  }
}

void appendHtmlEscaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '&': out.append("&amp;"); break;
      case '<': out.append("&lt;"); break;
      case '>': out.append("&gt;"); break;
      case '"': out.append("&quot;"); break;
      case '\'': out.append("&#39;"); break;
      default: out.push_back(c);
    }
  }
}

void appendUint(std::string& out, uint64_t v, int base = 10) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v, base);
  out.append(buf, r.ptr);
}

}  // namespace

// --- StaticFiles ------------------------------------------------------------

bool normaliseRootPath(std::string& path) {
  path.erase(0, std::min(path.find_first_not_of('/'), path.size()));
  if (path.empty() || path.back() == '/') return false;
  for (size_t i = 0; i < path.size();) {
    size_t end = std::min(path.find('/', i), path.size());
    std::string_view seg = std::string_view(path).substr(i, end - i);
    if (seg.empty() || seg == "." || seg == "..") return false;
    i = end + 1;
  }
  return true;
}

StaticFiles::StaticFiles(StaticOptions options) : options_(std::move(options)) {
  rootFd_ = ::open(options_.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootFd_ < 0) {
    throw std::runtime_error("serve root " + options_.root + ": " + std::strerror(errno));
  }
  if (char* real = ::realpath(options_.root.c_str(), nullptr)) {
    rootReal_ = real;
    std::free(real);
  }
  decoded_.reserve(256);
  path_.reserve(256);
}

StaticFiles::~StaticFiles() {
  if (rootFd_ >= 0) ::close(rootFd_);
}

int StaticFiles::openBeneath(const char* relPath, int flags) {
  if (haveOpenat2_ && !gStaticFilesForceOpenatFallback) {
    open_how how{};
    how.flags = static_cast<uint64_t>(flags);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    for (int attempt = 0;; ++attempt) {
      long fd = ::syscall(SYS_openat2, rootFd_, relPath, &how, sizeof how);
      if (fd >= 0) return static_cast<int>(fd);
      // EAGAIN: a concurrent rename raced the ".." check; retry a little.
      if (errno == EAGAIN && attempt < 3) continue;
      if (errno != ENOSYS) return -1;
      haveOpenat2_ = false;
      break;
    }
  }
  // Fallback: open, then check where the descriptor really points. The path is
  // already free of "..", so only symlinks can lead out; checking the opened
  // file (not the path) leaves no window for a swap.
  int fd = ::openat(rootFd_, relPath, flags);
  if (fd < 0) return -1;
  char link[32];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char real[PATH_MAX];
  ssize_t n = ::readlink(link, real, sizeof real);
  std::string_view r(real, n > 0 ? static_cast<size_t>(n) : 0);
  std::string_view root = rootReal_;
  bool inside = n > 0 && n < static_cast<ssize_t>(sizeof real) && !root.empty() &&
                (r == root || (r.starts_with(root) &&
                               (root.back() == '/' || r[root.size()] == '/')));
  if (!inside) {
    ::close(fd);
    errno = EXDEV;
    return -1;
  }
  return fd;
}

std::shared_ptr<StaticFiles::Entry> StaticFiles::load(const std::string& relPath, time_t now,
                                                      int& err) {
  const char* p = relPath.empty() ? "." : relPath.c_str();
  int fd = openBeneath(p, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    err = errno;
    return nullptr;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    err = errno;
    ::close(fd);
    return nullptr;
  }
  auto e = std::make_shared<Entry>();
  e->key = relPath;
  e->dev = st.st_dev;
  e->ino = st.st_ino;
  e->size = static_cast<uint64_t>(st.st_size);
  e->mtime = st.st_mtim;
  e->checkedAt = now;
  if (S_ISDIR(st.st_mode)) {
    e->isDir = true;
    ::close(fd);
    return e;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    err = kNotRegular;
    return nullptr;
  }

  if (e->size <= options_.memoryCacheMax) {
    e->body.resize(e->size);
    uint64_t got = 0;
    while (got < e->size) {
      ssize_t n = ::pread(fd, e->body.data() + got, e->size - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        err = errno;
        ::close(fd);
        return nullptr;
      }
      if (n == 0) break;  // shrank under us: serve what is there
      got += static_cast<uint64_t>(n);
    }
    e->body.resize(got);
    e->size = got;
    ::close(fd);
  } else {
    // Back to blocking: O_NONBLOCK was only for a fifo's open, and io_uring
    // treats O_NONBLOCK regular files differently.
    int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    e->file = std::make_shared<OpenFile>();
    e->file->fd = fd;
    e->file->size = e->size;
    e->file->mapWhole();
  }

  // ETag "<mtime hex>-<size hex>" as nginx writes it.
  std::string& h = e->headers;
  h.reserve(160);
  h.append("ETag: \"");
  appendUint(h, static_cast<uint64_t>(e->mtime.tv_sec), 16);
  h.push_back('-');
  appendUint(h, e->size, 16);
  h.append("\"\r\n");
  size_t etagStart = 6;
  size_t etagLen = h.size() - 2 - etagStart;
  h.append("Last-Modified: ");
  appendHttpDate(h, e->mtime.tv_sec);
  h.append("\r\n");
  e->validatorsLen = h.size();
  h.append("Content-Type: ");
  e->contentType = mimeTypeFor(relPath);
  h.append(e->contentType);
  h.append("\r\nAccept-Ranges: bytes\r\n");
  e->etag = std::string_view(h).substr(etagStart, etagLen);
  return e;
}

void StaticFiles::drop(std::unordered_map<std::string, std::shared_ptr<Entry>>::iterator it) {
  lru_.erase(it->second->lru);
  cache_.erase(it);
}

std::shared_ptr<StaticFiles::Entry> StaticFiles::lookup(const std::string& relPath, time_t now,
                                                        int& err) {
  auto it = cache_.find(relPath);
  if (it != cache_.end()) {
    Entry* e = it->second.get();
    bool fresh = now >= e->checkedAt && now - e->checkedAt < options_.revalidateSeconds;
    if (!fresh) {
      struct stat st;
      const char* p = relPath.empty() ? "." : relPath.c_str();
      fresh = ::fstatat(rootFd_, p, &st, 0) == 0 && st.st_dev == e->dev && st.st_ino == e->ino &&
              static_cast<uint64_t>(st.st_size) == e->size &&
              st.st_mtim.tv_sec == e->mtime.tv_sec && st.st_mtim.tv_nsec == e->mtime.tv_nsec &&
              S_ISDIR(st.st_mode) == e->isDir;
      if (fresh) e->checkedAt = now;
    }
    if (fresh) {
      lru_.splice(lru_.begin(), lru_, e->lru);
      return it->second;
    }
    drop(it);  // changed, replaced or gone: reopen below
  }

  std::shared_ptr<Entry> e = load(relPath, now, err);
  if (!e || options_.cacheEntries == 0) return e;
  while (cache_.size() >= options_.cacheEntries && !lru_.empty()) {
    auto victim = cache_.find(lru_.back()->key);
    drop(victim);
  }
  lru_.push_front(e.get());
  e->lru = lru_.begin();
  cache_.emplace(e->key, e);
  return e;
}

void StaticFiles::serveEntry(const StaticRequest& req, const std::shared_ptr<Entry>& entry,
                             StaticResponse& out) {
  const Entry& e = *entry;
  out.hold = entry;
  out.entryHeaders = e.headers;
  out.contentType = e.contentType;
  out.etag = e.etag;
  out.fileKey = e.key;

  // If-None-Match wins; If-Modified-Since counts only without it.
  bool notModified = false;
  if (!req.ifNoneMatch.empty()) {
    notModified = etagListMatches(req.ifNoneMatch, e.etag);
  } else if (!req.ifModifiedSince.empty()) {
    time_t since;
    notModified = parseHttpDate(req.ifModifiedSince, since) && e.mtime.tv_sec <= since;
  }
  if (notModified) {
    out.status = 304;
    out.cachedHeaders = std::string_view(e.headers).substr(0, e.validatorsLen);
    out.contentLength = 0;
    return;
  }

  uint64_t off = 0, len = e.size;
  out.status = 200;
  out.cachedHeaders = e.headers;
  if (!req.range.empty()) {
    bool rangeApplies = true;
    if (!req.ifRange.empty()) {
      std::string_view ir = parser::trimSpaces(req.ifRange);
      if (!ir.empty() && ir.front() == '"') {
        rangeApplies = ir == e.etag;  // strong comparison: W/ never matches
      } else {
        time_t t;
        rangeApplies = parseHttpDate(ir, t) && t == e.mtime.tv_sec;
      }
    }
    if (rangeApplies) {
      switch (parseRanges(req.range, e.size, ranges_)) {
        case RangeResult::kIgnore:
          break;
        case RangeResult::kUnsatisfiable:
          setError(out, 416);
          out.extraHeaders.append("Content-Range: bytes */");
          appendUint(out.extraHeaders, e.size);
          out.extraHeaders.append("\r\n");
          return;
        case RangeResult::kPartial:
          if (ranges_.size() > 1) return serveParts(e, out);
          out.status = 206;
          off = ranges_[0].offset;
          len = ranges_[0].length;
          out.extraHeaders.append("Content-Range: ");
          appendContentRange(out.extraHeaders, ranges_[0], e.size);
          out.extraHeaders.append("\r\n");
          break;
      }
    }
  }

  out.contentLength = len;
  if (e.file) {
    out.file = e.file;
    out.fileOffset = off;
  } else {
    out.memory = std::string_view(e.body).substr(off, len);
    out.memoryHeld = true;
  }
}

void StaticFiles::serveParts(const Entry& e, StaticResponse& out) {
  // The boundary: 20 hex digits, a random start then a count, so that a
  // file's own bytes cannot be made to match it.
  if (boundaryCount_ == 0) {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    boundarySeed_ = uint64_t(ts.tv_nsec) * 0x9e3779b97f4a7c15ULL ^ uint64_t(uintptr_t(this)) ^
                    (uint64_t(::getpid()) << 32);
  }
  uint64_t x = boundarySeed_ + 0x9e3779b97f4a7c15ULL * ++boundaryCount_;  // splitmix64
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  char boundary[21];
  std::snprintf(boundary, sizeof boundary, "%04x%016llx", unsigned(boundaryCount_ & 0xffff),
                static_cast<unsigned long long>(x));

  out.status = 206;
  out.cachedHeaders = std::string_view(e.headers).substr(0, e.validatorsLen);
  out.extraHeaders.append("Content-Type: multipart/byteranges; boundary=");
  out.extraHeaders.append(boundary);
  out.extraHeaders.append("\r\nAccept-Ranges: bytes\r\n");
  // Each part: its delimiter (after a CRLF that ends the previous part's
  // bytes), Content-Type and Content-Range, a blank line, the bytes; then
  // the closing delimiter (RFC 9110 14.6, RFC 2046 5.1.1).
  std::string& b = out.owned;
  b.clear();
  uint64_t total = 0;
  for (const ByteRange& r : ranges_) {
    size_t at = b.size();
    if (at > 0) b.append("\r\n");
    b.append("--").append(boundary).append("\r\nContent-Type: ").append(e.contentType);
    b.append("\r\nContent-Range: ");
    appendContentRange(b, r, e.size);
    b.append("\r\n\r\n");
    if (e.file) {
      out.parts.push_back({at, b.size() - at, r.offset, r.length});
      total += b.size() - at + r.length;
    } else {
      b.append(e.body, size_t(r.offset), size_t(r.length));
    }
  }
  size_t at = b.size();
  b.append("\r\n--").append(boundary).append("--\r\n");
  if (e.file) {
    out.parts.push_back({at, b.size() - at, 0, 0});
    out.file = e.file;
    out.contentLength = total + (b.size() - at);
  } else {
    out.memory = b;
    out.contentLength = b.size();
  }
}

void StaticFiles::redirectToSlash(std::string_view query, StaticResponse& out) {
  setError(out, 301);
  std::string& h = out.extraHeaders;
  h.append("Location: /");
  appendUrlEncoded(h, path_, /*keepSlash=*/true);
  h.push_back('/');
  // The query goes back as sent, but never with bytes that could end the line.
  for (unsigned char c : query) {
    if (c <= 0x20 || c >= 0x7f) {
      appendPercent(h, c);
    } else {
      h.push_back(static_cast<char>(c));
    }
  }
  h.append("\r\n");
}

void StaticFiles::serveListing(const std::string& relPath, StaticResponse& out) {
  int fd = openBeneath(relPath.empty() ? "." : relPath.c_str(),
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return setError(out, statusForErrno(errno));
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    ::close(fd);
    return setError(out, 500);
  }
  std::vector<std::pair<std::string, bool>> items;  // name, is a directory
  while (dirent* d = ::readdir(dir)) {
    std::string_view name = d->d_name;
    if (name == "." || name == "..") continue;
    if (name[0] == '.' && options_.dotfiles != Dotfiles::kAllow && !(relPath.empty() && name == ".well-known")) {
      continue;
    }
    bool isDir = d->d_type == DT_DIR;
    if (d->d_type == DT_LNK || d->d_type == DT_UNKNOWN) {
      struct stat st;
      isDir = ::fstatat(::dirfd(dir), d->d_name, &st, 0) == 0 && S_ISDIR(st.st_mode);
    }
    items.emplace_back(std::string(name), isDir);
  }
  ::closedir(dir);
  std::sort(items.begin(), items.end());

  std::string& b = out.owned;
  b.clear();
  b.append("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of /");
  appendHtmlEscaped(b, relPath);
  if (!relPath.empty()) b.push_back('/');
  b.append("</title></head>\n<body><h1>Index of /");
  appendHtmlEscaped(b, relPath);
  if (!relPath.empty()) b.push_back('/');
  b.append("</h1>\n<ul>\n");
  if (!relPath.empty()) b.append("<li><a href=\"../\">../</a></li>\n");
  for (const auto& [name, isDir] : items) {
    b.append("<li><a href=\"");
    appendUrlEncoded(b, name, /*keepSlash=*/false);
    if (isDir) b.push_back('/');
    b.append("\">");
    appendHtmlEscaped(b, name);
    if (isDir) b.push_back('/');
    b.append("</a></li>\n");
  }
  b.append("</ul>\n</body></html>\n");
  out.status = 200;
  out.cachedHeaders = kTextHtml;
  out.memory = b;
  out.contentLength = b.size();
}

void StaticFiles::handle(const StaticRequest& req, StaticResponse& out, time_t now) {
  // Reset without releasing buffers: the caller may reuse `out`.
  out.status = 200;
  out.cachedHeaders = {};
  out.entryHeaders = {};
  out.contentType = {};
  out.etag = {};
  out.fileKey = {};
  out.extraHeaders.clear();
  out.contentLength = 0;
  out.memory = {};
  out.memoryHeld = false;
  out.file.reset();
  out.fileOffset = 0;
  out.hold.reset();
  out.owned.clear();
  out.parts.clear();
  handlePath(req, out, now);
  if (out.status == 404 && req.pagesForMissing && (!options_.fallback.empty() || !options_.notFound.empty())) {
    serveMissing(req, out, now);
  }
}

void StaticFiles::serveMissing(const StaticRequest& req, StaticResponse& out, time_t now) {
  bool fallback = !options_.fallback.empty();
  std::string& relPath = path_;
  relPath.assign(fallback ? options_.fallback : options_.notFound);
  int err = 0;
  std::shared_ptr<Entry> e = lookup(relPath, now, err);
  if (!e || e->isDir) return;  // gone since the config was read: the plain 404
  out.memory = {};
  out.owned.clear();
  if (fallback) return serveEntry(req, e, out);
  // The page as the 404's body: no conditionals, no ranges.
  StaticRequest plain;
  plain.method = req.method;
  serveEntry(plain, e, out);
  out.status = 404;
}

void StaticFiles::handlePath(const StaticRequest& req, StaticResponse& out, time_t now) {
  if (req.method != "GET" && req.method != "HEAD") {
    setError(out, 405);
    out.extraHeaders.append("Allow: GET, HEAD\r\n");
    return;
  }

  // Target: path, then "?query" (kept for redirects), then "#fragment".
  std::string_view target = req.target;
  if (target.empty() || target.front() != '/') return setError(out, 400);
  size_t pathEnd = target.find_first_of("?#");
  std::string_view query;
  if (pathEnd != std::string_view::npos && target[pathEnd] == '?') {
    query = target.substr(pathEnd);
    query = query.substr(0, query.find('#'));
  }
  if (int status = decodePath(target.substr(0, pathEnd), decoded_)) {
    return setError(out, status);
  }
  bool dirForm;
  if (int status = normalisePath(decoded_, path_, dirForm)) return setError(out, status);
  if (options_.dotfiles != Dotfiles::kAllow && dotPath(path_)) {
    return setError(out, options_.dotfiles == Dotfiles::kDeny ? 403 : 404);
  }

  int err = 0;
  if (dirForm) {
    size_t dirLen = path_.size();
    if (!path_.empty()) path_.push_back('/');
    path_.append(options_.indexFile);
    std::shared_ptr<Entry> e = lookup(path_, now, err);
    if (e && !e->isDir) return serveEntry(req, e, out);
    path_.resize(dirLen);
    if (e) err = ENOENT;  // the index name is a directory: treat as no index
    if (err == ENOENT && options_.listDirectories) return serveListing(path_, out);
    return setError(out, statusForErrno(err));
  }

  std::shared_ptr<Entry> e = lookup(path_, now, err);
  if (!e) return setError(out, statusForErrno(err));
  if (e->isDir) return redirectToSlash(query, out);
  serveEntry(req, e, out);
}

}  // namespace kuai::server
