// StaticFiles: answers GET/HEAD for files under one root directory. One instance
// per reactor thread (it is not thread-safe and shares nothing), owned by that
// reactor's handler; its open-file cache is that thread's alone.
//
// It decides the whole response (status, headers, body source) but writes no
// bytes itself: the connection serialises a StaticResponse, adding the status
// line, Server, Date, Content-Length and Connection.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "server/byte_ranges.h"

namespace kuai::server {

// An open regular file shared by the cache and the responses still sending it.
// Closed when the last holder lets go.
struct OpenFile {
  int fd = -1;
  uint64_t size = 0;
  // The whole file mapped read-only (null where mmap refused it), for the
  // kernel to copy from when it sends (file_send.h). Never read through it in
  // user space: once the file is truncated, a page past its new end faults
  // with SIGBUS there, where the kernel's own copy fails with EFAULT instead.
  const char* map = nullptr;
  // Maps [0, size); kept for the file's lifetime (fixed once shared).
  void mapWhole();
  ~OpenFile();
};

// Paths with a segment that starts with a dot (.env, .git/, .htpasswd):
// kIgnore answers 404 as if they were not there (the default), kDeny 403,
// kAllow serves them. /.well-known/ (RFC 8615) is always served.
enum class Dotfiles : uint8_t { kIgnore, kDeny, kAllow };

struct StaticOptions {
  std::string root;               // directory to serve
  bool listDirectories = false;   // HTML index of a directory without index.html
  Dotfiles dotfiles = Dotfiles::kIgnore;  // listings leave them out unless kAllow
  std::string indexFile = "index.html";
  // For a path that is not there (what would be a 404), GET and HEAD get
  // this file instead (relative to the root): `fallback` with its own
  // status (200, validators and ranges as usual: a single-page app's
  // index.html), else `notFound` with 404 (a site's 404.html). Empty: none.
  std::string fallback;
  std::string notFound;
  uint64_t memoryCacheMax = 64 * 1024;  // files up to this size are kept in memory
  size_t cacheEntries = 4096;           // open-file cache capacity per reactor
  int revalidateSeconds = 1;            // re-stat a cached path at most this often
};

// The request fields StaticFiles reads. Views into the request; empty = absent.
struct StaticRequest {
  std::string_view method;   // "GET", "HEAD", ...
  std::string_view target;   // raw request target, e.g. "/a%20b/c.txt?x=1"
  std::string_view ifNoneMatch;
  std::string_view ifModifiedSince;
  std::string_view range;
  std::string_view ifRange;
  // False: a path that is not there is a 404 even where the route has a
  // fallback or notFound page (a precompressed sibling's lookup).
  bool pagesForMissing = true;
};

struct StaticResponse {
  int status = 200;
  // Header lines ("Name: value\r\n"), excluding Server, Date, Content-Length and
  // Connection. cachedHeaders points into a cache entry kept alive by `hold`;
  // extraHeaders carries per-request lines (Content-Range, Location, Allow...).
  std::string_view cachedHeaders;
  // A file's: all of its cached lines (ETag, Last-Modified, Content-Type,
  // Accept-Ranges), also for a 304 whose cachedHeaders are the validators.
  std::string_view entryHeaders;
  std::string_view contentType;  // a file's type (static storage), its ETag (in the entry)
  std::string_view etag;
  std::string_view fileKey;  // the file's path under the root (in the entry): what was served
  std::string extraHeaders;
  uint64_t contentLength = 0;
  // Body: memory (a view kept alive by `hold` or `owned`), or a file range.
  std::string_view memory;
  bool memoryHeld = false;  // memory lies in what `hold` keeps (a cached file)
  std::shared_ptr<OpenFile> file;
  uint64_t fileOffset = 0;
  std::shared_ptr<const void> hold;
  std::string owned;  // generated bodies: errors, redirects, listings
  // Several ranges of a file on disk (206 multipart/byteranges): each part's
  // delimiter and fields are owned.substr(textAt, textLen), then its range of
  // `file`; the last part is the closing delimiter alone (length 0). A file
  // kept in memory gets the whole multipart body built in `owned` instead.
  struct Part {
    size_t textAt = 0;
    size_t textLen = 0;
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  std::vector<Part> parts;
  bool hasBody() const { return contentLength > 0; }
};

// A file's path under a static root as the config or the command line gives
// it ("index.html", "/errors/404.html"): its leading '/' dropped, in place.
// False for an empty path, a directory's (ending in '/'), or "." / ".."
// segments.
bool normaliseRootPath(std::string& path);

class StaticFiles {
 public:
  // Opens the root; throws std::runtime_error with a message naming the path
  // when it is missing or not a directory.
  explicit StaticFiles(StaticOptions options);
  ~StaticFiles();

  // Fills `out` for one request. `now` is the reactor's cached clock.
  void handle(const StaticRequest& req, StaticResponse& out, time_t now);

 private:
  struct Entry;
  std::shared_ptr<Entry> lookup(const std::string& relPath, time_t now, int& err);
  std::shared_ptr<Entry> load(const std::string& relPath, time_t now, int& err);
  void drop(std::unordered_map<std::string, std::shared_ptr<Entry>>::iterator it);
  // openat2(RESOLVE_BENEATH) relative to the root, or openat plus a check of
  // the opened file's real path where the kernel lacks openat2. -1 + errno.
  int openBeneath(const char* relPath, int flags);
  void serveEntry(const StaticRequest& req, const std::shared_ptr<Entry>& entry,
                  StaticResponse& out);
  // The 206 for several ranges of `e` (ranges_): multipart/byteranges.
  void serveParts(const Entry& e, StaticResponse& out);
  void serveListing(const std::string& relPath, StaticResponse& out);
  void handlePath(const StaticRequest& req, StaticResponse& out, time_t now);
  // A 404 replaced by options_.fallback or options_.notFound, when set and there.
  void serveMissing(const StaticRequest& req, StaticResponse& out, time_t now);
  void redirectToSlash(std::string_view query, StaticResponse& out);

  StaticOptions options_;
  int rootFd_ = -1;
  std::string rootReal_;       // realpath of the root, for the openat fallback
  bool haveOpenat2_ = true;    // cleared on the first ENOSYS
  std::unordered_map<std::string, std::shared_ptr<Entry>> cache_;
  std::list<Entry*> lru_;      // most recently used first; entries own their node
  std::string decoded_;        // reused per request: percent-decoded path
  std::string path_;           // reused per request: normalised path, the cache key
  std::vector<ByteRange> ranges_;  // reused per request: a Range field's ranges
  uint64_t boundarySeed_ = 0;      // multipart boundaries: a random start, then a count
  uint64_t boundaryCount_ = 0;
};

}  // namespace kuai::server
