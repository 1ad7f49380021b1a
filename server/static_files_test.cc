// Unit tests for StaticFiles: each test builds a fresh tree under a temporary
// directory (files, nested dirs, index.html, symlinks in and out of the root, a
// fifo, a big file) and checks status, headers and body of handle().
#include "server/static_files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kuai::server {
extern bool gStaticFilesForceOpenatFallback;
}

// Counts heap allocations so a test can prove the cache-hit path makes none.
static std::atomic<long> gAllocations{0};

void* operator new(size_t n) {
  gAllocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// GCC cannot see that this operator new is malloc underneath.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace kuai::server {
namespace {

namespace fs = std::filesystem;

constexpr time_t kMtime = 1700000000;  // Tue, 14 Nov 2023 22:13:20 GMT
constexpr time_t kNow = 1800000000;

// A request whose fields own their bytes; run() makes the StaticRequest views.
struct Req {
  std::string method = "GET";
  std::string target;
  std::string ifNoneMatch;
  std::string ifModifiedSince;
  std::string range;
  std::string ifRange;
};

void writeFile(const fs::path& p, const std::string& data, time_t mtime = kMtime) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
  timespec times[2] = {{mtime, 0}, {mtime, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, 0), 0) << p;
}

std::string bigContent() {
  std::string s(200 * 1024, '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 13) % 26);
  return s;
}

// The body as the connection would send it: memory, or pread from the file.
std::string bodyOf(const StaticResponse& r) {
  if (!r.parts.empty()) {  // multipart/byteranges of a file on disk
    std::string s;
    for (const StaticResponse::Part& p : r.parts) {
      s.append(r.owned, p.textAt, p.textLen);
      std::string range(p.length, '\0');
      EXPECT_EQ(::pread(r.file->fd, range.data(), range.size(), static_cast<off_t>(p.offset)),
                static_cast<ssize_t>(range.size()));
      s += range;
    }
    EXPECT_EQ(s.size(), r.contentLength);
    return s;
  }
  if (r.file) {
    std::string s(r.contentLength, '\0');
    ssize_t n = ::pread(r.file->fd, s.data(), s.size(), static_cast<off_t>(r.fileOffset));
    EXPECT_EQ(n, static_cast<ssize_t>(s.size()));
    return s;
  }
  EXPECT_EQ(r.memory.size(), r.contentLength);
  return std::string(r.memory);
}

std::string allHeaders(const StaticResponse& r) {
  return std::string(r.cachedHeaders) + r.extraHeaders;
}

// Value of header `name`, or "<absent>".
std::string header(const StaticResponse& r, const std::string& name) {
  std::string h = allHeaders(r);
  std::string key = name + ": ";
  size_t pos = 0;
  while (pos < h.size()) {
    size_t eol = h.find("\r\n", pos);
    EXPECT_NE(eol, std::string::npos) << "unterminated header block: " << h;
    if (eol == std::string::npos) break;
    if (h.compare(pos, key.size(), key) == 0) return h.substr(pos + key.size(), eol - pos - key.size());
    pos = eol + 2;
  }
  return "<absent>";
}

// Fixture: a fresh tree per test under TEST_TMPDIR, base_/root as the root and
// base_/outside.txt just outside it. Single-threaded, like a reactor.
class StaticFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/static_files_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    base_ = tmpl;
    root_ = base_ / "root";
    fs::create_directories(root_ / "sub" / "nested");
    fs::create_directories(root_ / "withindex");
    fs::create_directories(root_ / "my dir");
    writeFile(base_ / "outside.txt", "OUTSIDE SECRET\n");
    writeFile(root_ / "index.html", "<h1>home</h1>\n");
    writeFile(root_ / "hello.txt", "hello world\n");
    writeFile(root_ / "a b.txt", "spaced\n");
    writeFile(root_ / ".hidden", "dot\n");
    writeFile(root_ / "empty.txt", "");
    writeFile(root_ / "big.bin", bigContent());
    writeFile(root_ / "sub" / "b.txt", "bee\n");
    writeFile(root_ / "sub" / "a&b<c>.txt", "amp\n");
    writeFile(root_ / "sub" / "javascript:x", "js\n");
    writeFile(root_ / "withindex" / "index.html", "<p>inner</p>\n");
    writeFile(root_ / "my dir" / "f.txt", "f\n");
    fs::create_symlink("hello.txt", root_ / "link_in");
    fs::create_symlink("sub", root_ / "link_dir_in");
    fs::create_symlink("../outside.txt", root_ / "link_rel_out");
    fs::create_symlink("/etc/hostname", root_ / "link_abs_out");
    fs::create_symlink("..", root_ / "link_parent");
    ASSERT_EQ(::mkfifo((root_ / "fifo").c_str(), 0644), 0);
  }

  void TearDown() override {
    gStaticFilesForceOpenatFallback = false;
    std::error_code ec;
    fs::permissions(root_ / "noperm.txt", fs::perms::owner_all, ec);
    fs::remove_all(base_, ec);
  }

  StaticOptions options() {
    StaticOptions o;
    o.root = root_.string();
    return o;
  }

  StaticResponse run(StaticFiles& sf, const Req& q, time_t now = kNow) {
    StaticRequest r;
    r.method = q.method;
    r.target = q.target;
    r.ifNoneMatch = q.ifNoneMatch;
    r.ifModifiedSince = q.ifModifiedSince;
    r.range = q.range;
    r.ifRange = q.ifRange;
    StaticResponse out;
    sf.handle(r, out, now);
    return out;
  }

  StaticResponse get(StaticFiles& sf, const std::string& target, time_t now = kNow) {
    Req q;
    q.target = target;
    return run(sf, q, now);
  }

  fs::path base_;
  fs::path root_;
};

constexpr const char* kHelloEtag = "\"6553f100-c\"";
constexpr const char* kHelloDate = "Tue, 14 Nov 2023 22:13:20 GMT";

TEST_F(StaticFilesTest, ServesFileWithValidators) {
  StaticFiles sf(options());
  StaticResponse r = get(sf, "/hello.txt");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(bodyOf(r), "hello world\n");
  EXPECT_EQ(r.contentLength, 12u);
  EXPECT_EQ(header(r, "Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(header(r, "ETag"), kHelloEtag);
  EXPECT_EQ(header(r, "Last-Modified"), kHelloDate);
  EXPECT_EQ(header(r, "Accept-Ranges"), "bytes");
  EXPECT_TRUE(r.extraHeaders.empty());
  EXPECT_TRUE(r.hold);
}

TEST_F(StaticFilesTest, ConstructorThrowsForBadRoot) {
  StaticOptions o = options();
  o.root = (base_ / "missing").string();
  try {
    StaticFiles sf(o);
    FAIL() << "no throw";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "serve root " + o.root + ": No such file or directory");
  }
  o.root = (root_ / "hello.txt").string();
  EXPECT_THROW(StaticFiles sf(o), std::runtime_error);
}

TEST_F(StaticFilesTest, TraversalAndEncodingAttacksFail) {
  struct Case {
    std::string target;
    int status;
  };
  const Case cases[] = {
      {"/../etc/passwd", 403},
      {"/..", 403},
      {"/a/../../x", 403},
      {"/sub/../../outside.txt", 403},
      {"/%2e%2e/etc/passwd", 403},
      {"/%2E%2E/%2e%2E/outside.txt", 403},
      {"/sub/%2e%2e/%2e%2e/outside.txt", 403},
      {"/.%2e/outside.txt", 403},
      {"/..%2f..%2fetc%2fpasswd", 404},
      {"/..%2Foutside.txt", 404},
      {"/sub%2fb.txt", 404},
      {"/sub%5cb.txt", 404},
      {"/sub\\b.txt", 404},
      {"/..\\outside.txt", 404},
      {"/hello.txt%00.png", 400},
      {std::string("/hello.txt\0.png", 15), 400},
      {"/%zz", 400},
      {"/%2", 400},
      {"/abc%", 400},
      {"/%g0", 400},
      {"hello.txt", 400},
      {"", 400},
      {"*", 400},
      {"http://example.com/hello.txt", 400},
      {"/link_rel_out", 404},
      {"/link_abs_out", 404},
      {"/link_parent/outside.txt", 404},
      {"/link_parent/root/hello.txt", 404},
  };
  StaticFiles sf(options());
  for (const Case& c : cases) {
    StaticResponse r = get(sf, c.target);
    EXPECT_EQ(r.status, c.status) << c.target;
    EXPECT_EQ(header(r, "Content-Type"), "text/plain; charset=utf-8") << c.target;
    std::string body = bodyOf(r);
    EXPECT_EQ(body.find("SECRET"), std::string::npos) << c.target;
    EXPECT_EQ(r.owned, body) << c.target;
    EXPECT_FALSE(r.file) << c.target;
  }
  EXPECT_EQ(bodyOf(get(sf, "/../etc/passwd")), "403 Forbidden\n");
  EXPECT_EQ(bodyOf(get(sf, "/nope")), "404 Not Found\n");
}

TEST_F(StaticFilesTest, SymlinksOutsideRefusedByFallbackToo) {
  gStaticFilesForceOpenatFallback = true;
  StaticFiles sf(options());
  EXPECT_EQ(get(sf, "/link_rel_out").status, 404);
  EXPECT_EQ(get(sf, "/link_abs_out").status, 404);
  EXPECT_EQ(get(sf, "/link_parent/outside.txt").status, 404);
  EXPECT_EQ(bodyOf(get(sf, "/link_in")), "hello world\n");
  EXPECT_EQ(bodyOf(get(sf, "/link_dir_in/b.txt")), "bee\n");
  EXPECT_EQ(bodyOf(get(sf, "/")), "<h1>home</h1>\n");
}

TEST_F(StaticFilesTest, NormalisesAndDecodesPaths) {
  StaticFiles sf(options());
  EXPECT_EQ(bodyOf(get(sf, "/./sub/./../hello.txt")), "hello world\n");
  EXPECT_EQ(bodyOf(get(sf, "//hello.txt")), "hello world\n");
  EXPECT_EQ(bodyOf(get(sf, "/sub//b.txt")), "bee\n");
  EXPECT_EQ(bodyOf(get(sf, "/hello.txt?x=1&y=/../..")), "hello world\n");
  EXPECT_EQ(bodyOf(get(sf, "/hello.txt#frag")), "hello world\n");
  EXPECT_EQ(bodyOf(get(sf, "/hell%6F.txt")), "hello world\n");
  EXPECT_EQ(bodyOf(get(sf, "/a%20b.txt")), "spaced\n");
  EXPECT_EQ(get(sf, "/a+b.txt").status, 404);  // '+' is not a space in a path
  EXPECT_EQ(bodyOf(get(sf, "/link_in")), "hello world\n");
  EXPECT_EQ(bodyOf(get(sf, "/link_dir_in/b.txt")), "bee\n");
}

// Paths with a dot segment are hidden unless the route allows them;
// /.well-known/ is always served; listings leave dotfiles out.
TEST_F(StaticFilesTest, Dotfiles) {
  fs::create_directories(root_ / ".git");
  writeFile(root_ / ".git" / "config", "[core]\n");
  writeFile(root_ / ".env", "SECRET=1\n");
  fs::create_directories(root_ / ".well-known" / "acme-challenge");
  writeFile(root_ / ".well-known" / "acme-challenge" / "tok", "token\n");
  writeFile(root_ / ".well-known" / ".secret", "s\n");
  writeFile(root_ / "sub" / ".htpasswd", "user:x\n");
  {
    StaticFiles sf(options());
    for (const char* path : {"/.hidden", "/.env", "/.git/config", "/.git/", "/.git", "/sub/.htpasswd",
                             "/%2eenv", "/sub/../.env", "/.well-known/.secret", "/.hidden?x=1"}) {
      StaticResponse r = get(sf, path);
      EXPECT_EQ(r.status, 404) << path;
      EXPECT_EQ(bodyOf(r).find("SECRET"), std::string::npos) << path;
    }
    EXPECT_EQ(bodyOf(get(sf, "/.well-known/acme-challenge/tok")), "token\n");
    EXPECT_EQ(bodyOf(get(sf, "/sub/b.txt")), "bee\n");
    EXPECT_EQ(bodyOf(get(sf, "/a.b/../hello.txt")), "hello world\n");  // a dot inside a name is fine
  }
  {
    StaticOptions o = options();
    o.dotfiles = Dotfiles::kDeny;
    StaticFiles sf(o);
    EXPECT_EQ(get(sf, "/.env").status, 403);
    EXPECT_EQ(get(sf, "/.git/config").status, 403);
  }
  {
    StaticOptions o = options();
    o.dotfiles = Dotfiles::kAllow;
    StaticFiles sf(o);
    EXPECT_EQ(bodyOf(get(sf, "/.hidden")), "dot\n");
    EXPECT_EQ(bodyOf(get(sf, "/.git/config")), "[core]\n");
    EXPECT_EQ(bodyOf(get(sf, "/sub/.htpasswd")), "user:x\n");
  }
  fs::remove(root_ / "index.html");
  StaticOptions listing = options();
  listing.listDirectories = true;
  {
    StaticFiles sf(listing);
    std::string root = bodyOf(get(sf, "/"));
    EXPECT_EQ(root.find(".hidden"), std::string::npos) << root;
    EXPECT_EQ(root.find(".git"), std::string::npos) << root;
    EXPECT_EQ(root.find(".env"), std::string::npos) << root;
    EXPECT_NE(root.find(".well-known/"), std::string::npos) << root;
    EXPECT_NE(root.find("hello.txt"), std::string::npos) << root;
    EXPECT_EQ(bodyOf(get(sf, "/sub/")).find(".htpasswd"), std::string::npos);
  }
  listing.dotfiles = Dotfiles::kAllow;
  {
    StaticFiles sf(listing);
    std::string root = bodyOf(get(sf, "/"));
    EXPECT_NE(root.find(".hidden"), std::string::npos) << root;
    EXPECT_NE(root.find(".git/"), std::string::npos) << root;
  }
}

TEST_F(StaticFilesTest, MimeTypes) {
  const std::pair<std::string, std::string> cases[] = {
      {"x.html", "text/html; charset=utf-8"},
      {"x.HTM", "text/html; charset=utf-8"},
      {"x.css", "text/css; charset=utf-8"},
      {"x.js", "text/javascript; charset=utf-8"},
      {"x.mjs", "text/javascript; charset=utf-8"},
      {"x.json", "application/json; charset=utf-8"},
      {"x.txt", "text/plain; charset=utf-8"},
      {"x.xml", "text/xml; charset=utf-8"},
      {"x.md", "text/markdown; charset=utf-8"},
      {"x.csv", "text/csv; charset=utf-8"},
      {"x.map", "application/json; charset=utf-8"},
      {"x.svg", "image/svg+xml"},
      {"x.PNG", "image/png"},
      {"x.jpg", "image/jpeg"},
      {"x.jpeg", "image/jpeg"},
      {"x.gif", "image/gif"},
      {"x.webp", "image/webp"},
      {"x.avif", "image/avif"},
      {"x.ico", "image/x-icon"},
      {"x.wasm", "application/wasm"},
      {"x.pdf", "application/pdf"},
      {"x.zip", "application/zip"},
      {"x.tar.gz", "application/gzip"},
      {"x.mp4", "video/mp4"},
      {"x.webm", "video/webm"},
      {"x.mp3", "audio/mpeg"},
      {"x.ogg", "audio/ogg"},
      {"x.woff", "font/woff"},
      {"x.woff2", "font/woff2"},
      {"x.ttf", "font/ttf"},
      {"x.otf", "font/otf"},
      {"x.vtt", "text/vtt; charset=utf-8"},
      {"x.xhtml", "application/xhtml+xml; charset=utf-8"},
      {"feed.RSS", "application/rss+xml; charset=utf-8"},
      {"x.m4a", "audio/mp4"},
      {"x.flac", "audio/flac"},
      {"x.mov", "video/quicktime"},
      {"x.m3u8", "application/vnd.apple.mpegurl"},
      {"x.tar.zst", "application/zstd"},
      {"x.7z", "application/x-7z-compressed"},
      {"x.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
      {"noext", "application/octet-stream"},
      {"x.unknownext", "application/octet-stream"},
      {"x.", "application/octet-stream"},
      {".bashrc", "application/octet-stream"},
  };
  for (const auto& [name, type] : cases) writeFile(root_ / name, "x");
  StaticOptions o = options();
  o.dotfiles = Dotfiles::kAllow;  // for .bashrc
  StaticFiles sf(o);
  for (const auto& [name, type] : cases) {
    StaticResponse r = get(sf, "/" + name);
    EXPECT_EQ(r.status, 200) << name;
    EXPECT_EQ(header(r, "Content-Type"), type) << name;
  }
  EXPECT_EQ(header(get(sf, "/"), "Content-Type"), "text/html; charset=utf-8");
}

TEST_F(StaticFilesTest, IfNoneMatch) {
  StaticFiles sf(options());
  auto withInm = [&](const std::string& inm) {
    Req q;
    q.target = "/hello.txt";
    q.ifNoneMatch = inm;
    q.ifModifiedSince = "Thu, 01 Jan 1970 00:00:00 GMT";  // ignored when INM present
    return run(sf, q);
  };
  for (std::string inm : {std::string(kHelloEtag), std::string("W/") + kHelloEtag,
                          "\"x\", " + std::string(kHelloEtag), std::string("*"),
                          "\"a\",W/\"b\" ,  " + std::string(kHelloEtag) + " , \"c\""}) {
    StaticResponse r = withInm(inm);
    EXPECT_EQ(r.status, 304) << inm;
    EXPECT_EQ(r.contentLength, 0u) << inm;
    EXPECT_FALSE(r.hasBody());
    EXPECT_TRUE(r.memory.empty());
    EXPECT_FALSE(r.file);
    EXPECT_EQ(header(r, "ETag"), kHelloEtag);
    EXPECT_EQ(header(r, "Last-Modified"), kHelloDate);
    EXPECT_EQ(header(r, "Content-Type"), "<absent>");
  }
  for (std::string inm : {"\"6553f100-d\"", "6553f100-c", "\"other\", W/\"x\"", "\"6553f100-c"}) {
    StaticResponse r = withInm(inm);
    EXPECT_EQ(r.status, 200) << inm;
    EXPECT_EQ(bodyOf(r), "hello world\n");
  }
}

TEST_F(StaticFilesTest, IfModifiedSince) {
  StaticFiles sf(options());
  auto withIms = [&](const std::string& ims) {
    Req q;
    q.target = "/hello.txt";
    q.ifModifiedSince = ims;
    return run(sf, q);
  };
  EXPECT_EQ(withIms(kHelloDate).status, 304);
  EXPECT_EQ(withIms("Tue, 14 Nov 2023 22:13:21 GMT").status, 304);
  EXPECT_EQ(withIms("Wed, 15 Nov 2023 00:00:00 GMT").status, 304);
  EXPECT_EQ(withIms("Tuesday, 14-Nov-23 22:13:20 GMT").status, 304);  // RFC 850
  EXPECT_EQ(withIms("Tue Nov 14 22:13:20 2023").status, 304);         // asctime
  EXPECT_EQ(withIms("Tue, 14 Nov 2023 22:13:19 GMT").status, 200);
  EXPECT_EQ(withIms("Mon, 01 Jan 2001 00:00:00 GMT").status, 200);
  EXPECT_EQ(withIms("garbage").status, 200);
  EXPECT_EQ(withIms("Tue, 14 Nov 2023 22:13:20 UTC").status, 200);
  EXPECT_EQ(withIms("Tue, 14 Foo 2023 22:13:20 GMT").status, 200);
  StaticResponse r = withIms(kHelloDate);
  EXPECT_EQ(r.contentLength, 0u);
  EXPECT_EQ(header(r, "ETag"), kHelloEtag);
  EXPECT_EQ(header(r, "Last-Modified"), kHelloDate);
}

TEST_F(StaticFilesTest, RangesOnMemoryFile) {
  StaticFiles sf(options());
  auto ranged = [&](const std::string& range, const std::string& ifRange = "") {
    Req q;
    q.target = "/hello.txt";  // "hello world\n", 12 bytes
    q.range = range;
    q.ifRange = ifRange;
    return run(sf, q);
  };
  struct Case {
    std::string range;
    std::string body;
    std::string contentRange;
  };
  const Case partial[] = {
      {"bytes=0-4", "hello", "bytes 0-4/12"},
      {"bytes=6-", "world\n", "bytes 6-11/12"},
      {"bytes=-6", "world\n", "bytes 6-11/12"},
      {"bytes=3-3", "l", "bytes 3-3/12"},
      {"bytes=0-999", "hello world\n", "bytes 0-11/12"},
      {"bytes=-999", "hello world\n", "bytes 0-11/12"},
      {"bytes=11-", "\n", "bytes 11-11/12"},
      {"Bytes=0-0", "h", "bytes 0-0/12"},
      {"bytes=6-99999999999999999999999", "world\n", "bytes 6-11/12"},
  };
  for (const Case& c : partial) {
    StaticResponse r = ranged(c.range);
    EXPECT_EQ(r.status, 206) << c.range;
    EXPECT_EQ(bodyOf(r), c.body) << c.range;
    EXPECT_EQ(r.contentLength, c.body.size()) << c.range;
    EXPECT_EQ(header(r, "Content-Range"), c.contentRange) << c.range;
    EXPECT_EQ(header(r, "ETag"), kHelloEtag) << c.range;
    EXPECT_EQ(header(r, "Content-Type"), "text/plain; charset=utf-8") << c.range;
  }
  for (std::string range : {"bytes=12-", "bytes=100-200", "bytes=-0", "bytes=99999999999999999999999-"}) {
    StaticResponse r = ranged(range);
    EXPECT_EQ(r.status, 416) << range;
    EXPECT_EQ(header(r, "Content-Range"), "bytes */12") << range;
    EXPECT_EQ(bodyOf(r), "416 Range Not Satisfiable\n");
  }
  for (std::string range : {"bytes=5-2", "bytes=a-b", "items=0-1", "bytes=0-1,3-x", "bytes=",
                            "bytes=-", "bytes=1", "bytes=--1", "bytes=0-1-2", "bytes= 0 - 1",
                            "bytes=+1-2", "bytes=,", "bytes=0-1,5-2"}) {
    StaticResponse r = ranged(range);
    EXPECT_EQ(r.status, 200) << range;
    EXPECT_EQ(bodyOf(r), "hello world\n") << range;
    EXPECT_EQ(header(r, "Content-Range"), "<absent>") << range;
  }
  // If-Range: the range applies only for the strong ETag or the exact date.
  EXPECT_EQ(ranged("bytes=0-4", kHelloEtag).status, 206);
  EXPECT_EQ(ranged("bytes=0-4", kHelloDate).status, 206);
  EXPECT_EQ(ranged("bytes=0-4", std::string("W/") + kHelloEtag).status, 200);
  EXPECT_EQ(ranged("bytes=0-4", "\"other\"").status, 200);
  EXPECT_EQ(ranged("bytes=0-4", "Tue, 14 Nov 2023 22:13:21 GMT").status, 200);
  EXPECT_EQ(ranged("bytes=0-4", "junk").status, 200);
  EXPECT_EQ(ranged("bytes=100-", "\"other\"").status, 200);  // no 416 either
  StaticResponse r = ranged("bytes=0-4", "\"other\"");
  EXPECT_EQ(bodyOf(r), "hello world\n");
}

// A multipart/byteranges body split into its parts: (Content-Type,
// Content-Range, bytes) each, checking the framing on the way.
struct BodyPart {
  std::string type, range, bytes;
};
std::vector<BodyPart> splitParts(const StaticResponse& r, const std::string& body) {
  std::string ct = header(r, "Content-Type");
  const std::string prefix = "multipart/byteranges; boundary=";
  EXPECT_EQ(ct.compare(0, prefix.size(), prefix), 0) << ct;
  std::string delim = "--" + ct.substr(prefix.size());
  std::vector<BodyPart> parts;
  size_t at = 0;
  EXPECT_EQ(body.compare(0, delim.size(), delim), 0) << body;
  while (at < body.size()) {
    EXPECT_EQ(body.compare(at, delim.size(), delim), 0) << body.substr(at);
    at += delim.size();
    if (body.compare(at, 4, "--\r\n") == 0) {
      EXPECT_EQ(at + 4, body.size()) << "bytes after the closing delimiter";
      return parts;
    }
    EXPECT_EQ(body.compare(at, 2, "\r\n"), 0);
    size_t fieldsEnd = body.find("\r\n\r\n", at);
    if (fieldsEnd == std::string::npos) break;
    std::string fields = body.substr(at + 2, fieldsEnd + 2 - (at + 2));
    size_t next = body.find("\r\n" + delim, fieldsEnd + 4);
    if (next == std::string::npos) break;
    BodyPart p;
    p.bytes = body.substr(fieldsEnd + 4, next - (fieldsEnd + 4));
    for (size_t i = 0; i < fields.size();) {
      size_t eol = fields.find("\r\n", i);
      std::string line = fields.substr(i, eol - i);
      if (line.rfind("Content-Type: ", 0) == 0) p.type = line.substr(14);
      if (line.rfind("Content-Range: ", 0) == 0) p.range = line.substr(15);
      i = eol + 2;
    }
    parts.push_back(p);
    at = next + 2;
  }
  ADD_FAILURE() << "no closing delimiter: " << body;
  return parts;
}

TEST_F(StaticFilesTest, SeveralRangesAnswerMultipart) {
  StaticFiles sf(options());
  auto ranged = [&](const std::string& range) {
    Req q;
    q.target = "/hello.txt";  // "hello world\n", 12 bytes
    q.range = range;
    return run(sf, q);
  };
  struct Case {
    std::string range;
    std::vector<std::pair<std::string, std::string>> parts;  // Content-Range, bytes
  };
  const Case cases[] = {
      {"bytes=0-1,3-4", {{"bytes 0-1/12", "he"}, {"bytes 3-4/12", "lo"}}},
      // The order asked for, with list whitespace and empty elements.
      {"bytes=6-, 0-1", {{"bytes 6-11/12", "world\n"}, {"bytes 0-1/12", "he"}}},
      {"bytes=-1 ,, 0-0,", {{"bytes 11-11/12", "\n"}, {"bytes 0-0/12", "h"}}},
      // Unsatisfiable ones dropped; overlapping ones merged, in file order.
      {"bytes=9-9,100-,0-0", {{"bytes 9-9/12", "l"}, {"bytes 0-0/12", "h"}}},
      {"bytes=8-9,0-2,1-3", {{"bytes 0-3/12", "hell"}, {"bytes 8-9/12", "rl"}}},
  };
  for (const Case& c : cases) {
    StaticResponse r = ranged(c.range);
    EXPECT_EQ(r.status, 206) << c.range;
    EXPECT_EQ(header(r, "Content-Range"), "<absent>") << c.range;
    EXPECT_EQ(header(r, "ETag"), kHelloEtag) << c.range;
    std::string body = bodyOf(r);
    EXPECT_EQ(r.contentLength, body.size());
    std::vector<BodyPart> parts = splitParts(r, body);
    ASSERT_EQ(parts.size(), c.parts.size()) << c.range << "\n" << body;
    for (size_t i = 0; i < parts.size(); ++i) {
      EXPECT_EQ(parts[i].type, "text/plain; charset=utf-8") << c.range;
      EXPECT_EQ(parts[i].range, c.parts[i].first) << c.range;
      EXPECT_EQ(parts[i].bytes, c.parts[i].second) << c.range;
    }
  }
  // Ranges that merge into one, or one left standing: a single-part 206.
  for (auto [range, contentRange] : {std::pair{"bytes=0-4,2-6", "bytes 0-6/12"},
                                     std::pair{"bytes=0-4,5-6", "bytes 0-6/12"},
                                     std::pair{"bytes=0-1,100-200", "bytes 0-1/12"}}) {
    StaticResponse r = ranged(range);
    EXPECT_EQ(r.status, 206) << range;
    EXPECT_EQ(header(r, "Content-Range"), contentRange) << range;
    EXPECT_EQ(header(r, "Content-Type"), "text/plain; charset=utf-8") << range;
  }
  EXPECT_EQ(ranged("bytes=100-,12-").status, 416);
  // Two boundaries differ.
  EXPECT_NE(header(ranged("bytes=0-1,3-4"), "Content-Type"), header(ranged("bytes=0-1,3-4"), "Content-Type"));
  // Past 100 specs the field is ignored: the whole file.
  std::string many = "bytes=0-0";
  for (int i = 1; i <= 100; ++i) many += "," + std::to_string(i % 12) + "-" + std::to_string(i % 12);
  StaticResponse r = ranged(many);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(bodyOf(r), "hello world\n");
}

TEST_F(StaticFilesTest, RangesOnBigFileUseOffsets) {
  const std::string big = bigContent();
  StaticFiles sf(options());
  Req q;
  q.target = "/big.bin";
  q.range = "bytes=100000-100099";
  StaticResponse r = run(sf, q);
  EXPECT_EQ(r.status, 206);
  ASSERT_TRUE(r.file);
  EXPECT_EQ(r.fileOffset, 100000u);
  EXPECT_EQ(r.contentLength, 100u);
  EXPECT_EQ(bodyOf(r), big.substr(100000, 100));
  EXPECT_EQ(header(r, "Content-Range"), "bytes 100000-100099/204800");
  q.range = "bytes=-10";
  r = run(sf, q);
  EXPECT_EQ(r.fileOffset, big.size() - 10);
  EXPECT_EQ(bodyOf(r), big.substr(big.size() - 10));
  q.range = "bytes=204800-";
  EXPECT_EQ(run(sf, q).status, 416);
  // Several ranges: the parts' fields in memory, the bytes read from the file.
  q.range = "bytes=200000-200009,-5,70000-70099";
  r = run(sf, q);
  EXPECT_EQ(r.status, 206);
  ASSERT_TRUE(r.file);
  ASSERT_EQ(r.parts.size(), 4u);
  std::vector<BodyPart> parts = splitParts(r, bodyOf(r));
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].range, "bytes 200000-200009/204800");
  EXPECT_EQ(parts[0].bytes, big.substr(200000, 10));
  EXPECT_EQ(parts[1].range, "bytes 204795-204799/204800");
  EXPECT_EQ(parts[1].bytes, big.substr(204795));
  EXPECT_EQ(parts[2].range, "bytes 70000-70099/204800");
  EXPECT_EQ(parts[2].bytes, big.substr(70000, 100));
  EXPECT_EQ(parts[2].type, "application/octet-stream");
}

TEST_F(StaticFilesTest, FallbackServesThePageForPathsNotThere) {
  StaticOptions o = options();
  o.fallback = "index.html";
  StaticFiles sf(o);
  for (std::string path : {"/app/route", "/missing.js", "/sub/deeper/x", "/.env", "/withindex/nope"}) {
    StaticResponse r = get(sf, path);
    EXPECT_EQ(r.status, 200) << path;
    EXPECT_EQ(bodyOf(r), "<h1>home</h1>\n") << path;
    EXPECT_EQ(header(r, "Content-Type"), "text/html; charset=utf-8") << path;
    EXPECT_NE(header(r, "ETag"), "<absent>") << path;
  }
  // What is there is served as before.
  EXPECT_EQ(bodyOf(get(sf, "/hello.txt")), "hello world\n");
  EXPECT_EQ(bodyOf(get(sf, "/withindex/")), "<p>inner</p>\n");
  // The page's validators and ranges work as for the page itself.
  Req q;
  q.target = "/some/route";
  q.ifNoneMatch = header(get(sf, "/"), "ETag");
  EXPECT_EQ(run(sf, q).status, 304);
  q.ifNoneMatch.clear();
  q.range = "bytes=0-3";
  StaticResponse r = run(sf, q);
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(bodyOf(r), "<h1>");
  // Other answers stay: 405, 400, a path escaping the root.
  q = Req();
  q.method = "POST";
  q.target = "/nope";
  EXPECT_EQ(run(sf, q).status, 405);
  EXPECT_EQ(get(sf, "nope").status, 400);
  EXPECT_EQ(get(sf, "/../secret").status, 403);
  // The page gone: the plain 404.
  fs::remove(root_ / "index.html");
  EXPECT_EQ(get(sf, "/app/route", kNow + 10).status, 404);
}

TEST_F(StaticFilesTest, NotFoundPageIsThe404sBody) {
  fs::create_directories(root_ / "errors");
  writeFile(root_ / "errors" / "404.html", "<p>no such page</p>\n");
  StaticOptions o = options();
  o.notFound = "errors/404.html";
  StaticFiles sf(o);
  StaticResponse r = get(sf, "/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(bodyOf(r), "<p>no such page</p>\n");
  EXPECT_EQ(header(r, "Content-Type"), "text/html; charset=utf-8");
  // No 304 and no 206 for a 404.
  Req q;
  q.target = "/nope";
  q.ifNoneMatch = header(r, "ETag");
  q.range = "bytes=0-1";
  r = run(sf, q);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(bodyOf(r), "<p>no such page</p>\n");
  EXPECT_EQ(get(sf, "/hello.txt").status, 200);
  // With a fallback too, the fallback wins.
  o.fallback = "hello.txt";
  StaticFiles both(o);
  EXPECT_EQ(get(both, "/nope").status, 200);
  EXPECT_EQ(bodyOf(get(both, "/nope")), "hello world\n");
}

TEST_F(StaticFilesTest, EmptyFile) {
  StaticFiles sf(options());
  StaticResponse r = get(sf, "/empty.txt");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.contentLength, 0u);
  EXPECT_FALSE(r.hasBody());
  EXPECT_EQ(header(r, "ETag"), "\"6553f100-0\"");
  Req q;
  q.target = "/empty.txt";
  q.range = "bytes=0-";
  EXPECT_EQ(run(sf, q).status, 416);
}

TEST_F(StaticFilesTest, MemoryVersusFileSplit) {
  const std::string big = bigContent();
  StaticFiles sf(options());
  StaticResponse small = get(sf, "/hello.txt");
  EXPECT_FALSE(small.file);
  EXPECT_EQ(small.memory, "hello world\n");
  StaticResponse r = get(sf, "/big.bin");
  EXPECT_EQ(r.status, 200);
  ASSERT_TRUE(r.file);
  EXPECT_GE(r.file->fd, 0);
  EXPECT_EQ(r.file->size, big.size());
  EXPECT_TRUE(r.memory.empty());
  EXPECT_EQ(r.fileOffset, 0u);
  EXPECT_EQ(r.contentLength, big.size());
  EXPECT_EQ(bodyOf(r), big);
  EXPECT_EQ(header(r, "Content-Type"), "application/octet-stream");
  // The same open file is shared by later responses.
  EXPECT_EQ(get(sf, "/big.bin").file, r.file);

  // Exactly at the limit stays in memory; one byte over goes to a file.
  writeFile(root_ / "limit.bin", std::string(64 * 1024, 'x'));
  writeFile(root_ / "over.bin", std::string(64 * 1024 + 1, 'x'));
  EXPECT_FALSE(get(sf, "/limit.bin").file);
  EXPECT_EQ(get(sf, "/limit.bin").memory.size(), 64u * 1024);
  EXPECT_TRUE(get(sf, "/over.bin").file);

  StaticOptions o = options();
  o.memoryCacheMax = 4;
  StaticFiles tiny(o);
  StaticResponse t = get(tiny, "/hello.txt");
  ASSERT_TRUE(t.file);
  EXPECT_EQ(bodyOf(t), "hello world\n");
}

TEST_F(StaticFilesTest, DirectoriesRedirectAndIndex) {
  StaticFiles sf(options());
  StaticResponse r = get(sf, "/sub");
  EXPECT_EQ(r.status, 301);
  EXPECT_EQ(header(r, "Location"), "/sub/");
  EXPECT_EQ(bodyOf(r), "301 Moved Permanently\n");
  EXPECT_EQ(header(get(sf, "/sub?x=1&y=2#f"), "Location"), "/sub/?x=1&y=2");
  EXPECT_EQ(header(get(sf, "/withindex"), "Location"), "/withindex/");
  EXPECT_EQ(header(get(sf, "/my%20dir"), "Location"), "/my%20dir/");
  EXPECT_EQ(header(get(sf, "/sub/nested?a\r\nX: y"), "Location"), "/sub/nested/?a%0D%0AX:%20y");
  EXPECT_EQ(header(get(sf, "//sub/../link_dir_in"), "Location"), "/link_dir_in/");

  EXPECT_EQ(bodyOf(get(sf, "/")), "<h1>home</h1>\n");
  EXPECT_EQ(bodyOf(get(sf, "/withindex/")), "<p>inner</p>\n");
  EXPECT_EQ(header(get(sf, "/withindex/"), "Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(bodyOf(get(sf, "/sub/..")), "<h1>home</h1>\n");
  EXPECT_EQ(bodyOf(get(sf, "/withindex/.")), "<p>inner</p>\n");
  EXPECT_EQ(get(sf, "/sub/").status, 404);  // no index, listing off
  EXPECT_EQ(get(sf, "/hello.txt/").status, 404);
  EXPECT_EQ(get(sf, "/missing/").status, 404);
}

TEST_F(StaticFilesTest, DirectoryListing) {
  StaticOptions o = options();
  o.listDirectories = true;
  StaticFiles sf(o);
  StaticResponse r = get(sf, "/sub/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(header(r, "Content-Type"), "text/html; charset=utf-8");
  std::string body = bodyOf(r);
  EXPECT_EQ(r.owned, body);
  EXPECT_NE(body.find("<title>Index of /sub/</title>"), std::string::npos) << body;
  EXPECT_NE(body.find("<a href=\"../\">../</a>"), std::string::npos) << body;
  size_t amp = body.find("<a href=\"a%26b%3Cc%3E.txt\">a&amp;b&lt;c&gt;.txt</a>");
  size_t bee = body.find("<a href=\"b.txt\">b.txt</a>");
  size_t js = body.find("<a href=\"javascript%3Ax\">javascript:x</a>");
  size_t nested = body.find("<a href=\"nested/\">nested/</a>");
  EXPECT_NE(amp, std::string::npos) << body;
  EXPECT_NE(bee, std::string::npos) << body;
  EXPECT_NE(js, std::string::npos) << body;
  EXPECT_NE(nested, std::string::npos) << body;
  EXPECT_LT(amp, bee);
  EXPECT_LT(bee, js);
  EXPECT_LT(js, nested);
  EXPECT_EQ(body.find("<c>"), std::string::npos);

  // The root: no "../", directories and symlinked directories end in '/'.
  std::string rootList = bodyOf(get(sf, "/"));  // has index.html: served instead
  EXPECT_EQ(rootList, "<h1>home</h1>\n");
  fs::remove(root_ / "index.html");
  EXPECT_EQ(bodyOf(get(sf, "/")), "<h1>home</h1>\n");  // cached until revalidated
  rootList = bodyOf(get(sf, "/", kNow + 1));
  EXPECT_EQ(rootList.find("../"), std::string::npos) << rootList;
  EXPECT_NE(rootList.find("<a href=\"link_dir_in/\">link_dir_in/</a>"), std::string::npos);
  EXPECT_NE(rootList.find("<a href=\"my%20dir/\">my dir/</a>"), std::string::npos);
  EXPECT_NE(rootList.find("<a href=\"hello.txt\">hello.txt</a>"), std::string::npos);

  EXPECT_EQ(bodyOf(get(sf, "/withindex/")), "<p>inner</p>\n");
  EXPECT_EQ(get(sf, "/missing/").status, 404);
  EXPECT_EQ(get(sf, "/hello.txt/").status, 404);
  EXPECT_EQ(get(sf, "/sub").status, 301);
}

TEST_F(StaticFilesTest, MethodNotAllowed) {
  StaticFiles sf(options());
  for (std::string m : {"POST", "PUT", "DELETE", "OPTIONS", "get", ""}) {
    Req q;
    q.method = m;
    q.target = "/hello.txt";
    StaticResponse r = run(sf, q);
    EXPECT_EQ(r.status, 405) << m;
    EXPECT_EQ(header(r, "Allow"), "GET, HEAD") << m;
    EXPECT_EQ(bodyOf(r), "405 Method Not Allowed\n");
  }
}

TEST_F(StaticFilesTest, HeadMatchesGet) {
  StaticFiles sf(options());
  for (std::string target : {"/hello.txt", "/big.bin", "/sub", "/nope", "/"}) {
    for (std::string range : {"", "bytes=1-3", "bytes=999999-"}) {
      Req q;
      q.target = target;
      q.range = range;
      StaticResponse g = run(sf, q);
      q.method = "HEAD";
      StaticResponse h = run(sf, q);
      EXPECT_EQ(h.status, g.status) << target;
      EXPECT_EQ(allHeaders(h), allHeaders(g)) << target;
      EXPECT_EQ(h.contentLength, g.contentLength) << target;
    }
  }
}

TEST_F(StaticFilesTest, NonRegularAndUnreadable) {
  StaticFiles sf(options());
  EXPECT_EQ(get(sf, "/fifo").status, 403);  // and does not block on open
  writeFile(root_ / "noperm.txt", "x");
  fs::permissions(root_ / "noperm.txt", fs::perms::none);
  if (::geteuid() != 0) {  // root reads it anyway
    EXPECT_EQ(get(sf, "/noperm.txt").status, 403);
  }
}

TEST_F(StaticFilesTest, CacheNoticesChangesAfterRevalidateWindow) {
  StaticOptions o = options();
  o.revalidateSeconds = 5;
  StaticFiles sf(o);
  EXPECT_EQ(bodyOf(get(sf, "/hello.txt", kNow)), "hello world\n");

  // Rewritten in place, same size, new mtime.
  writeFile(root_ / "hello.txt", "HELLO WORLD\n", kMtime + 1);
  EXPECT_EQ(bodyOf(get(sf, "/hello.txt", kNow + 4)), "hello world\n");  // within window
  StaticResponse r = get(sf, "/hello.txt", kNow + 5);
  EXPECT_EQ(bodyOf(r), "HELLO WORLD\n");
  EXPECT_EQ(header(r, "ETag"), "\"6553f101-c\"");

  // Same size and second, only the nanoseconds differ.
  writeFile(root_ / "hello.txt", "hello again\n", kMtime + 1);
  timespec ts[2] = {{kMtime + 1, 5}, {kMtime + 1, 5}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (root_ / "hello.txt").c_str(), ts, 0), 0);
  EXPECT_EQ(bodyOf(get(sf, "/hello.txt", kNow + 10)), "hello again\n");

  // Replaced by rename.
  writeFile(root_ / "tmp.txt", "renamed in\n", kMtime + 1);
  fs::rename(root_ / "tmp.txt", root_ / "hello.txt");
  EXPECT_EQ(bodyOf(get(sf, "/hello.txt", kNow + 14)), "hello again\n");
  EXPECT_EQ(bodyOf(get(sf, "/hello.txt", kNow + 15)), "renamed in\n");

  // Deleted.
  fs::remove(root_ / "hello.txt");
  EXPECT_EQ(get(sf, "/hello.txt", kNow + 16).status, 200);
  EXPECT_EQ(get(sf, "/hello.txt", kNow + 20).status, 404);

  // A big file replaced: a response still sending the old one keeps its fd.
  StaticResponse old = get(sf, "/big.bin", kNow + 20);
  writeFile(root_ / "tmp.bin", std::string(100 * 1024, 'z'), kMtime + 2);
  fs::rename(root_ / "tmp.bin", root_ / "big.bin");
  StaticResponse fresh = get(sf, "/big.bin", kNow + 30);
  EXPECT_EQ(fresh.contentLength, 100u * 1024);
  EXPECT_EQ(bodyOf(fresh), std::string(100 * 1024, 'z'));
  EXPECT_EQ(bodyOf(old), bigContent());
}

TEST_F(StaticFilesTest, RevalidateZeroChecksEveryTime) {
  StaticOptions o = options();
  o.revalidateSeconds = 0;
  StaticFiles sf(o);
  StaticResponse before = get(sf, "/sub/b.txt");
  writeFile(root_ / "sub" / "b.txt", "changed\n", kMtime + 7);
  EXPECT_EQ(bodyOf(get(sf, "/sub/b.txt")), "changed\n");
  EXPECT_EQ(bodyOf(before), "bee\n");  // the old entry lives while held

  // A directory that becomes a file is noticed too.
  EXPECT_EQ(get(sf, "/my%20dir").status, 301);
  fs::remove_all(root_ / "my dir");
  EXPECT_EQ(get(sf, "/my%20dir").status, 404);
  writeFile(root_ / "my dir", "now a file\n");
  EXPECT_EQ(bodyOf(get(sf, "/my%20dir")), "now a file\n");
}

TEST_F(StaticFilesTest, CacheIsBoundedLru) {
  StaticOptions o = options();
  o.cacheEntries = 2;
  o.revalidateSeconds = 1000;  // only eviction can make it reread a file
  writeFile(root_ / "1.txt", "one\n");
  writeFile(root_ / "2.txt", "two\n");
  writeFile(root_ / "3.txt", "three\n");
  StaticFiles sf(o);
  get(sf, "/1.txt");
  get(sf, "/2.txt");
  get(sf, "/1.txt");  // 1 is now the most recent
  get(sf, "/3.txt");  // evicts 2
  writeFile(root_ / "1.txt", "ONE\n", kMtime + 1);
  writeFile(root_ / "2.txt", "TWO\n", kMtime + 1);
  EXPECT_EQ(bodyOf(get(sf, "/1.txt")), "one\n");  // still cached
  EXPECT_EQ(bodyOf(get(sf, "/2.txt")), "TWO\n");  // was evicted: reread

  StaticOptions none = options();
  none.cacheEntries = 0;
  StaticFiles uncached(none);
  EXPECT_EQ(bodyOf(get(uncached, "/hello.txt")), "hello world\n");
  EXPECT_EQ(bodyOf(get(uncached, "/hello.txt")), "hello world\n");
}

TEST_F(StaticFilesTest, ReusedResponseIsReset) {
  StaticFiles sf(options());
  StaticRequest req;
  req.method = "GET";
  req.target = "/hello.txt";
  req.range = "bytes=0-1";
  StaticResponse out;
  sf.handle(req, out, kNow);
  EXPECT_EQ(out.status, 206);
  req.target = "/big.bin";
  req.range = {};
  sf.handle(req, out, kNow);
  EXPECT_EQ(out.status, 200);
  EXPECT_TRUE(out.extraHeaders.empty());
  EXPECT_TRUE(out.memory.empty());
  req.target = "/hello.txt";
  sf.handle(req, out, kNow);
  EXPECT_FALSE(out.file);
  EXPECT_EQ(out.fileOffset, 0u);
  EXPECT_EQ(out.memory, "hello world\n");
  req.target = "/nope";
  sf.handle(req, out, kNow);
  EXPECT_EQ(out.status, 404);
  EXPECT_FALSE(out.hold);
}

TEST_F(StaticFilesTest, CacheHitDoesNotAllocate) {
  StaticFiles sf(options());
  StaticRequest req;
  req.method = "GET";
  req.target = "/sub/b.txt?v=3";
  StaticResponse out;
  sf.handle(req, out, kNow);  // miss: loads the entry, sizes the buffers
  sf.handle(req, out, kNow);
  req.target = "/withindex/";
  sf.handle(req, out, kNow);
  sf.handle(req, out, kNow);
  req.ifNoneMatch = "\"nope\", \"6553f100-e\"";
  sf.handle(req, out, kNow);

  // No gtest assertions inside the measured region.
  long before = gAllocations.load();
  req.target = "/sub/b.txt?v=3";
  req.ifNoneMatch = {};
  sf.handle(req, out, kNow);
  int status1 = out.status;
  std::string_view body1 = out.memory;
  req.target = "/withindex/";
  sf.handle(req, out, kNow);
  std::string_view body2 = out.memory;
  req.ifNoneMatch = "\"nope\", \"6553f100-d\"";
  sf.handle(req, out, kNow);
  int status3 = out.status;
  long allocated = gAllocations.load() - before;
  EXPECT_EQ(allocated, 0);
  EXPECT_EQ(status1, 200);
  EXPECT_EQ(body1, "bee\n");
  EXPECT_EQ(body2, "<p>inner</p>\n");
  EXPECT_EQ(status3, 304);
}

}  // namespace
}  // namespace kuai::server
