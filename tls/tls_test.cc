// Drives a server TlsSession against a BoringSSL client SSL in memory: every
// byte one side writes is handed to the other by pump(), no sockets involved.
// Certificates come from tools/gen-test-certs, run once into a temp folder.
#include "tls/tls.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

namespace kuai::tls {
namespace {

namespace fs = std::filesystem;
using Status = TlsSession::Status;

fs::path findScript() {
  const fs::path rel = fs::path("tools") / "gen-test-certs";
  if (const char* root = std::getenv("KUAI_SOURCE_ROOT")) {
    if (fs::exists(root / rel)) return root / rel;
  }
  if (const char* runfiles = std::getenv("TEST_SRCDIR")) {
    const char* ws = std::getenv("TEST_WORKSPACE");
    fs::path p = fs::path(runfiles) / (ws ? ws : "kuai") / rel;
    if (fs::exists(p)) return p;
  }
  for (fs::path dir = fs::current_path();; dir = dir.parent_path()) {
    if (fs::exists(dir / rel)) return dir / rel;
    if (dir == dir.parent_path()) break;
  }
  return {};
}

// Runs gen-test-certs once for the whole binary and removes what it made.
class CertEnvironment : public ::testing::Environment {
 public:
  static inline fs::path dir;

  void SetUp() override {
    fs::path script = findScript();
    ASSERT_FALSE(script.empty()) << "tools/gen-test-certs not found (set KUAI_SOURCE_ROOT)";
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/kuai-tls-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir = tmpl;
    std::string cmd = "'" + script.string() + "' '" + dir.string() + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir, ec);
  }
};
const auto* const kCertEnvironment = ::testing::AddGlobalTestEnvironment(new CertEnvironment);

std::string certPath(const char* name) { return (CertEnvironment::dir / name).string(); }

CertificateConfig certificate(std::string cert, std::string key, std::string ocsp = "") {
  CertificateConfig c;
  c.certFile = std::move(cert);
  c.keyFile = std::move(key);
  c.ocspFile = std::move(ocsp);
  return c;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void writeFile(const std::string& path, std::string_view data) {
  std::ofstream(path, std::ios::binary) << data;
}

// What the client side of a test connection asks for.
struct ClientOptions {
  uint16_t maxVersion = TLS1_3_VERSION;
  std::string sni;
  std::vector<std::string> alpn = {"http/1.1"};
  SSL_SESSION* session = nullptr;  // to resume
  bool noTicket = false;           // TLS 1.2 session IDs instead of tickets
  const char* ciphers = nullptr;   // TLS 1.2 cipher list
  bool ocsp = false;
  bool verify = true;  // against ca.pem, for sni or "localhost"
  std::string clientCert, clientKey;  // a client certificate to present
};

int clientIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// A BoringSSL client over memory BIOs; keeps the last session it was given.
class Client {
 public:
  explicit Client(const ClientOptions& o) : ctx_(SSL_CTX_new(TLS_method())) {
    SSL_CTX* ctx = ctx_.get();
    SSL_CTX_set_max_proto_version(ctx, o.maxVersion);
    if (o.ciphers) {
      EXPECT_TRUE(SSL_CTX_set_strict_cipher_list(ctx, o.ciphers));
    }
    if (o.noTicket) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    SSL_CTX_sess_set_new_cb(ctx, [](SSL* ssl, SSL_SESSION* s) {
      static_cast<Client*>(SSL_get_ex_data(ssl, clientIndex()))->session_.reset(s);
      return 1;  // we keep the reference
    });
    if (!o.clientCert.empty()) {
      EXPECT_TRUE(SSL_CTX_use_certificate_chain_file(ctx, o.clientCert.c_str()));
      EXPECT_TRUE(SSL_CTX_use_PrivateKey_file(ctx, o.clientKey.c_str(), SSL_FILETYPE_PEM));
    }
    if (o.verify) {
      EXPECT_TRUE(SSL_CTX_load_verify_locations(ctx, certPath("ca.pem").c_str(), nullptr));
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    }
    ssl_.reset(SSL_new(ctx));
    SSL* ssl = ssl_.get();
    SSL_set_ex_data(ssl, clientIndex(), this);
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, in_, out_);
    SSL_set_connect_state(ssl);
    if (!o.sni.empty()) SSL_set_tlsext_host_name(ssl, o.sni.c_str());
    if (o.verify) SSL_set1_host(ssl, o.sni.empty() ? "localhost" : o.sni.c_str());
    if (!o.alpn.empty()) {
      std::string wire;
      for (const std::string& p : o.alpn) wire += char(p.size()) + p;
      SSL_set_alpn_protos(ssl, reinterpret_cast<const uint8_t*>(wire.data()), wire.size());
    }
    if (o.session) SSL_set_session(ssl, o.session);
    if (o.ocsp) SSL_enable_ocsp_stapling(ssl);
  }

  SSL* ssl() { return ssl_.get(); }
  SSL_SESSION* session() { return session_.get(); }
  bool done() { return SSL_is_init_finished(ssl_.get()); }
  bool failed() const { return failed_; }

  // Handshake, then reads whatever arrived (tickets, data, close_notify).
  void step() {
    if (failed_) return;
    if (!done()) {
      int r = SSL_do_handshake(ssl_.get());
      if (r != 1) {
        int e = SSL_get_error(ssl_.get(), r);
        if (e != SSL_ERROR_WANT_READ) failed_ = true;
        ERR_clear_error();
        return;
      }
    }
    char buf[16384];
    for (;;) {
      int r = SSL_read(ssl_.get(), buf, sizeof buf);
      if (r > 0) {
        received.append(buf, size_t(r));
        continue;
      }
      int e = SSL_get_error(ssl_.get(), r);
      if (e == SSL_ERROR_ZERO_RETURN) closed = true;
      else if (e != SSL_ERROR_WANT_READ) failed_ = true;
      ERR_clear_error();
      return;
    }
  }

  void feed(const std::string& bytes) { BIO_write(in_, bytes.data(), int(bytes.size())); }
  std::string take() {
    std::string s(BIO_pending(out_), '\0');
    if (!s.empty()) BIO_read(out_, s.data(), int(s.size()));
    return s;
  }
  void write(const std::string& data) {
    ASSERT_EQ(SSL_write(ssl_.get(), data.data(), int(data.size())), int(data.size()));
  }

  std::string received;
  bool closed = false;

 private:
  bssl::UniquePtr<SSL_CTX> ctx_;
  bssl::UniquePtr<SSL> ssl_;
  bssl::UniquePtr<SSL_SESSION> session_;
  BIO* in_ = nullptr;
  BIO* out_ = nullptr;
  bool failed_ = false;
};

// Moves bytes both ways until neither side produces any. Returns the server's
// last status; decrypted data collects in `plain`.
Status pump(Client& c, TlsSession& s, std::string& plain) {
  Status st = Status::kOk;
  for (int i = 0; i < 100; ++i) {
    c.step();
    std::string up = c.take();
    if (!up.empty()) st = s.onCiphertext(up.data(), up.size(), plain);
    std::string down;
    s.takeOutput(down);
    if (!down.empty()) c.feed(down);
    if (up.empty() && down.empty()) break;
    if (st != Status::kOk) {
      c.step();
      break;
    }
  }
  return st;
}

Status pump(Client& c, TlsSession& s) {
  std::string plain;
  return pump(c, s, plain);
}

std::vector<std::string> peerNames(SSL* ssl) {
  std::vector<std::string> names;
  bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(ssl));
  if (!peer) return names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(peer.get(), NID_subject_alt_name, nullptr, nullptr));
  for (size_t i = 0; sans && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type != GEN_DNS) continue;
    names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                       size_t(ASN1_STRING_length(gn->d.dNSName)));
  }
  GENERAL_NAMES_free(sans);
  return names;
}

int peerKeyType(SSL* ssl) {
  bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(ssl));
  if (!peer) return 0;
  bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(peer.get()));
  return EVP_PKEY_id(key.get());
}

TlsConfig defaultConfig() {
  TlsConfig c;
  c.certificates = {certificate(certPath("ecdsa.pem"), certPath("ecdsa.key")),
                    certificate(certPath("rsa.pem"), certPath("rsa.key"))};
  return c;
}

std::shared_ptr<TlsContext> makeContext(const TlsConfig& config = defaultConfig()) {
  std::string err;
  auto ctx = createTlsContext(config, err);
  EXPECT_TRUE(ctx) << err;
  EXPECT_TRUE(!ctx || err.empty());
  return ctx;
}

std::string loadError(const TlsConfig& config) {
  std::string err;
  auto ctx = createTlsContext(config, err);
  EXPECT_FALSE(ctx);
  EXPECT_EQ(err.find('\n'), std::string::npos);
  return err;
}

// A full handshake; expects both sides to finish.
void handshake(Client& c, TlsSession& s) {
  EXPECT_EQ(pump(c, s), Status::kOk) << s.error();
  EXPECT_TRUE(s.handshakeDone()) << s.error();
  EXPECT_TRUE(c.done());
  EXPECT_FALSE(c.failed());
}

TEST(Tls, HandshakeTls13) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  Client c({});
  handshake(c, *s);
  EXPECT_EQ(s->version(), "TLSv1.3");
  EXPECT_EQ(SSL_version(c.ssl()), TLS1_3_VERSION);
  EXPECT_EQ(SSL_get_verify_result(c.ssl()), X509_V_OK);
  EXPECT_EQ(s->alpnSelected(), "http/1.1");
  EXPECT_EQ(s->serverName(), "");
  EXPECT_FALSE(s->resumed());
  EXPECT_EQ(peerKeyType(c.ssl()), EVP_PKEY_EC);
  EXPECT_EQ(peerNames(c.ssl()), (std::vector<std::string>{"localhost", "kuai.test"}));
}

TEST(Tls, HandshakeTls12WithModernCipher) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  ClientOptions o;
  o.maxVersion = TLS1_2_VERSION;
  Client c(o);
  handshake(c, *s);
  EXPECT_EQ(s->version(), "TLSv1.2");
  EXPECT_EQ(SSL_get_verify_result(c.ssl()), X509_V_OK);
  const SSL_CIPHER* cipher = SSL_get_current_cipher(c.ssl());
  ASSERT_NE(cipher, nullptr);
  EXPECT_TRUE(SSL_CIPHER_is_aead(cipher));
  EXPECT_EQ(SSL_CIPHER_get_kx_nid(cipher), NID_kx_ecdhe);
  EXPECT_EQ(s->alpnSelected(), "http/1.1");
}

TEST(Tls, Tls13OnlyRefusesTls12Client) {
  TlsConfig config = defaultConfig();
  config.minVersion = 0x0304;
  auto ctx = makeContext(config);
  auto s = ctx->newSession();
  ClientOptions o;
  o.maxVersion = TLS1_2_VERSION;
  Client c(o);
  EXPECT_EQ(pump(c, *s), Status::kError);
  EXPECT_NE(s->error().find("TLS handshake failed"), std::string::npos) << s->error();
}

TEST(Tls, LegacyTls12CiphersAreRefused) {
  auto ctx = makeContext();
  // CBC with ECDHE, RSA key exchange with GCM, CBC with SHA-1: none is offered.
  for (const char* cipher : {"ECDHE-ECDSA-AES128-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"}) {
    auto s = ctx->newSession();
    ClientOptions o;
    o.maxVersion = TLS1_2_VERSION;
    o.ciphers = cipher;
    o.sni = std::string(cipher).find("RSA") != std::string::npos || cipher[0] == 'A' ? "other.test" : "";
    Client c(o);
    EXPECT_EQ(pump(c, *s), Status::kError) << cipher;
    EXPECT_NE(s->error().find("no shared cipher"), std::string::npos) << s->error();
    EXPECT_TRUE(c.failed());
  }
}

TEST(Tls, ChaChaWhenClientPrefersIt) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  ClientOptions o;
  o.maxVersion = TLS1_2_VERSION;
  o.ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256";
  Client c(o);
  handshake(c, *s);
  EXPECT_STREQ(SSL_CIPHER_get_name(SSL_get_current_cipher(c.ssl())), "ECDHE-ECDSA-CHACHA20-POLY1305");
}

TEST(Tls, AlpnNotOfferedProceeds) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  ClientOptions o;
  o.alpn.clear();
  Client c(o);
  handshake(c, *s);
  EXPECT_EQ(s->alpnSelected(), "");
}

TEST(Tls, AlpnPicksServerPreference) {
  TlsConfig config = defaultConfig();
  config.alpn = {"h2", "http/1.1"};
  auto ctx = makeContext(config);
  auto s = ctx->newSession();
  ClientOptions o;
  o.alpn = {"http/1.1", "h2"};
  Client c(o);
  handshake(c, *s);
  EXPECT_EQ(s->alpnSelected(), "h2");
}

TEST(Tls, AlpnWithoutOverlapFails) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  ClientOptions o;
  o.alpn = {"h2"};
  Client c(o);
  EXPECT_EQ(pump(c, *s), Status::kError);
  EXPECT_TRUE(c.failed());
}

TEST(Tls, SniSelectsRsaCertificate) {
  auto ctx = makeContext();
  for (uint16_t v : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    auto s = ctx->newSession();
    ClientOptions o;
    o.maxVersion = v;
    o.sni = "other.test";
    Client c(o);
    handshake(c, *s);
    EXPECT_EQ(s->serverName(), "other.test");
    EXPECT_EQ(SSL_get_verify_result(c.ssl()), X509_V_OK);
    EXPECT_EQ(peerKeyType(c.ssl()), EVP_PKEY_RSA);
    EXPECT_EQ(peerNames(c.ssl()), std::vector<std::string>{"other.test"});
  }
}

TEST(Tls, SniDefaultsToFirstCertificate) {
  auto ctx = makeContext();
  for (const char* name : {"kuai.test", "KUAI.TEST", "unknown.test"}) {
    auto s = ctx->newSession();
    ClientOptions o;
    o.sni = name;
    o.verify = false;
    Client c(o);
    handshake(c, *s);
    EXPECT_EQ(s->serverName(), name);
    EXPECT_EQ(peerKeyType(c.ssl()), EVP_PKEY_EC) << name;
  }
}

TEST(Tls, SniWildcard) {
  std::string key = certPath("wild.key"), pem = certPath("wild.pem");
  std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
                    "-subj /CN=wild -addext subjectAltName=DNS:*.example.com -keyout '" +
                    key + "' -out '" + pem + "' 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  TlsConfig config = defaultConfig();
  config.certificates.push_back(certificate(pem, key));
  auto ctx = makeContext(config);
  struct Case {
    const char* sni;
    std::vector<std::string> names;
  };
  for (const Case& k : {Case{"a.example.com", {"*.example.com"}},
                        Case{"example.com", {"localhost", "kuai.test"}},
                        Case{"a.b.example.com", {"localhost", "kuai.test"}},
                        Case{"other.test", {"other.test"}}}) {
    auto s = ctx->newSession();
    ClientOptions o;
    o.sni = k.sni;
    o.verify = false;
    Client c(o);
    handshake(c, *s);
    EXPECT_EQ(peerNames(c.ssl()), k.names) << k.sni;
  }
}

// Full handshake, then one that resumes with the session the client kept.
void expectResumption(TlsContext& ctx, ClientOptions o, bool expectResumed) {
  bssl::UniquePtr<SSL_SESSION> saved;
  {
    auto s = ctx.newSession();
    Client c(o);
    handshake(c, *s);
    EXPECT_FALSE(s->resumed());
    ASSERT_NE(c.session(), nullptr);
    ASSERT_TRUE(SSL_SESSION_is_resumable(c.session()));
    saved.reset(SSL_SESSION_up_ref(c.session()) ? c.session() : nullptr);
  }
  o.session = saved.get();
  auto s = ctx.newSession();
  Client c(o);
  handshake(c, *s);
  EXPECT_EQ(s->resumed(), expectResumed);
  EXPECT_EQ(bool(SSL_session_reused(c.ssl())), expectResumed);
}

TEST(Tls, ResumeWithTicket) {
  auto ctx = makeContext();
  for (uint16_t v : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    ClientOptions o;
    o.maxVersion = v;
    expectResumption(*ctx, o, true);
    o.sni = "other.test";
    expectResumption(*ctx, o, true);
  }
}

TEST(Tls, NoResumptionAcrossCertificates) {
  auto ctx = makeContext();
  for (uint16_t v : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    for (bool noTicket : {false, true}) {
      if (noTicket && v == TLS1_3_VERSION) continue;
      ClientOptions o;
      o.maxVersion = v;
      o.noTicket = noTicket;
      o.sni = "other.test";
      o.verify = false;
      bssl::UniquePtr<SSL_SESSION> saved;
      {
        auto s = ctx->newSession();
        Client c(o);
        handshake(c, *s);
        ASSERT_NE(c.session(), nullptr);
        SSL_SESSION_up_ref(c.session());
        saved.reset(c.session());
      }
      o.sni = "kuai.test";
      o.session = saved.get();
      auto s = ctx->newSession();
      Client c(o);
      handshake(c, *s);
      EXPECT_FALSE(s->resumed()) << v << noTicket;
      EXPECT_EQ(peerKeyType(c.ssl()), EVP_PKEY_EC);
    }
  }
}

TEST(Tls, ResumeFromSessionCache) {
  auto ctx = makeContext();
  ClientOptions o;
  o.maxVersion = TLS1_2_VERSION;
  o.noTicket = true;
  expectResumption(*ctx, o, true);
}

TEST(Tls, NoResumptionWhenCacheAndTicketsAreOff) {
  TlsConfig config = defaultConfig();
  config.sessionCacheSize = 0;
  config.ticketKeyRotateSeconds = 0;
  auto ctx = makeContext(config);
  for (uint16_t v : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    ClientOptions o;
    o.maxVersion = v;
    bssl::UniquePtr<SSL_SESSION> saved;
    {
      auto s = ctx->newSession();
      Client c(o);
      handshake(c, *s);
      // TLS 1.3 sends no ticket at all; TLS 1.2's session has no id to resume by.
      ASSERT_TRUE(!c.session() || !SSL_SESSION_is_resumable(c.session())) << v;
      if (!c.session()) continue;
      SSL_SESSION_up_ref(c.session());
      saved.reset(c.session());
    }
    o.session = saved.get();
    auto s = ctx->newSession();
    Client c(o);
    handshake(c, *s);
    EXPECT_FALSE(s->resumed()) << v;
  }
}

// A ticket sealed before one rotation still opens; after two it does not.
void ticketAcrossRotations(uint16_t version, int rotations, bool expectResumed) {
  auto ctx = makeContext();
  ClientOptions o;
  o.maxVersion = version;
  bssl::UniquePtr<SSL_SESSION> saved;
  {
    auto s = ctx->newSession();
    Client c(o);
    handshake(c, *s);
    ASSERT_NE(c.session(), nullptr);
    SSL_SESSION_up_ref(c.session());
    saved.reset(c.session());
  }
  for (int i = 0; i < rotations; ++i) ctx->rotateTicketKeys();
  o.session = saved.get();
  auto s = ctx->newSession();
  Client c(o);
  handshake(c, *s);
  EXPECT_EQ(s->resumed(), expectResumed) << "version " << version << ", rotations " << rotations;
  if (expectResumed && version == TLS1_2_VERSION) {
    // Opened with the previous key: the ticket is renewed under the current one.
    EXPECT_NE(c.session(), nullptr);
  }
}

TEST(Tls, ResumeAfterTicketKeyRotation) {
  for (uint16_t v : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    ticketAcrossRotations(v, 1, true);
    ticketAcrossRotations(v, 2, false);
  }
}

TEST(Tls, TicketKeysRotateOnTheirOwn) {
  TlsConfig config = defaultConfig();
  config.ticketKeyRotateSeconds = 1;
  config.sessionCacheSize = 0;  // tickets only
  auto ctx = makeContext(config);
  ClientOptions o;
  bssl::UniquePtr<SSL_SESSION> saved;
  {
    auto s = ctx->newSession();
    Client c(o);
    handshake(c, *s);
    SSL_SESSION_up_ref(c.session());
    saved.reset(c.session());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));  // two periods idle: key dropped
  o.session = saved.get();
  auto s = ctx->newSession();
  Client c(o);
  handshake(c, *s);
  EXPECT_FALSE(s->resumed());
}

TEST(Tls, OneMebibyteBothWays) {
  auto ctx = makeContext();
  for (uint16_t v : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    auto s = ctx->newSession();
    ClientOptions o;
    o.maxVersion = v;
    Client c(o);
    handshake(c, *s);
    std::string data(1 << 20, '\0');
    for (size_t i = 0; i < data.size(); ++i) data[i] = char((i * 131 + i / 7) & 0xff);

    c.write(data);
    std::string plain;
    EXPECT_EQ(pump(c, *s, plain), Status::kOk);
    EXPECT_TRUE(plain == data) << plain.size();

    ASSERT_EQ(s->writePlaintext(data.data(), data.size()), Status::kOk);
    EXPECT_TRUE(s->hasOutput());
    pump(c, *s);
    EXPECT_TRUE(c.received == data) << c.received.size();
    EXPECT_FALSE(s->hasOutput());
  }
}

TEST(Tls, ByteByByteHandshakeAndData) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  Client c({});
  std::string plain;
  for (int i = 0; i < 20 && !(c.done() && s->handshakeDone()); ++i) {
    c.step();
    std::string up = c.take();
    for (char ch : up) ASSERT_EQ(s->onCiphertext(&ch, 1, plain), Status::kOk) << s->error();
    std::string down;
    s->takeOutput(down);
    c.feed(down);
  }
  ASSERT_TRUE(s->handshakeDone());
  c.write("GET / HTTP/1.1\r\n\r\n");
  std::string up = c.take();
  for (char ch : up) ASSERT_EQ(s->onCiphertext(&ch, 1, plain), Status::kOk);
  EXPECT_EQ(plain, "GET / HTTP/1.1\r\n\r\n");
}

TEST(Tls, TruncatedClientHelloWaits) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  Client c({});
  c.step();
  std::string hello = c.take();
  ASSERT_GT(hello.size(), 100u);
  std::string plain;
  size_t half = hello.size() / 2;
  EXPECT_EQ(s->onCiphertext(hello.data(), half, plain), Status::kOk);
  EXPECT_FALSE(s->hasOutput());
  EXPECT_FALSE(s->handshakeDone());
  EXPECT_EQ(s->onCiphertext(hello.data() + half, hello.size() - half, plain), Status::kOk);
  EXPECT_TRUE(s->hasOutput());
  handshake(c, *s);
  EXPECT_TRUE(plain.empty());
}

TEST(Tls, PlainHttpDetected) {
  auto ctx = makeContext();
  std::string plain;
  for (const char* req : {"GET / HTTP/1.1\r\n", "POST /x HTTP/1.1\r\n", "HEAD / HTTP/1.0\r\n",
                          "PUT /a HTTP/1.1\r\n", "OPTIONS * HTTP/1.1\r\n", "DELETE / HTTP/1.1\r\n",
                          "PATCH / HTTP/1.1\r\n", "CONNECT a:443 HTTP/1.1\r\n", "TRACE / HTTP/1.1\r\n"}) {
    auto s = ctx->newSession();
    EXPECT_EQ(s->onCiphertext(req, std::strlen(req), plain), Status::kPlainHttp) << req;
    EXPECT_FALSE(s->hasOutput());
  }
  auto s = ctx->newSession();  // method split across reads
  EXPECT_EQ(s->onCiphertext("PO", 2, plain), Status::kOk);
  EXPECT_EQ(s->onCiphertext("S", 1, plain), Status::kOk);
  EXPECT_EQ(s->onCiphertext("T / HTTP/1.1\r\n", 14, plain), Status::kPlainHttp);
  EXPECT_TRUE(plain.empty());
}

TEST(Tls, GarbageIsAnError) {
  auto ctx = makeContext();
  std::string plain;
  for (std::string_view junk : {std::string_view("\x00\x01\x02\x03", 4), std::string_view("HELLO"),
                                std::string_view("GEX"), std::string_view("\x80\x2e\x01\x03\x01", 5)}) {
    auto s = ctx->newSession();
    EXPECT_EQ(s->onCiphertext(junk.data(), junk.size(), plain), Status::kError) << junk;
    EXPECT_NE(s->error().find("not a TLS handshake"), std::string::npos) << s->error();
    EXPECT_EQ(s->onCiphertext("x", 1, plain), Status::kError);  // stays failed
  }
  // A handshake record header followed by nonsense fails inside BoringSSL.
  auto s = ctx->newSession();
  std::string bad("\x16\x03\x01\x00\x08\x01\x00\x00\x04\xff\xff\xff\xff", 13);
  EXPECT_EQ(s->onCiphertext(bad.data(), bad.size(), plain), Status::kError);
  EXPECT_NE(s->error().find("TLS handshake failed"), std::string::npos) << s->error();
  std::string alert;
  s->takeOutput(alert);
  EXPECT_FALSE(alert.empty());  // the alert to send before closing
  EXPECT_EQ(alert[0], '\x15');
}

TEST(Tls, CloseNotifyFromClient) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  Client c({});
  handshake(c, *s);
  c.write("last words");
  SSL_shutdown(c.ssl());
  std::string up = c.take(), plain;
  EXPECT_EQ(s->onCiphertext(up.data(), up.size(), plain), Status::kClosed);
  EXPECT_EQ(plain, "last words");
  EXPECT_EQ(s->onCiphertext("x", 1, plain), Status::kClosed);
}

TEST(Tls, ShutdownSendsCloseNotify) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  Client c({});
  handshake(c, *s);
  ASSERT_EQ(s->writePlaintext("bye", 3), Status::kOk);
  s->shutdown();
  s->shutdown();  // once is enough
  pump(c, *s);
  EXPECT_EQ(c.received, "bye");
  EXPECT_TRUE(c.closed);
}

TEST(Tls, WriteBeforeHandshakeIsAnError) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  EXPECT_EQ(s->writePlaintext("x", 1), Status::kError);
  EXPECT_FALSE(s->error().empty());
  s->shutdown();  // harmless before the handshake
  EXPECT_FALSE(s->hasOutput());
}

TEST(Tls, OcspResponseIsStapled) {
  std::string der("\x30\x03\x0a\x01\x00", 5);  // OCSPResponse{successful}, no body: enough to staple
  writeFile(certPath("ocsp.der"), der);
  TlsConfig config = defaultConfig();
  config.certificates[0].ocspFile = certPath("ocsp.der");
  auto ctx = makeContext(config);
  for (uint16_t v : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    auto s = ctx->newSession();
    ClientOptions o;
    o.maxVersion = v;
    o.ocsp = true;
    Client c(o);
    handshake(c, *s);
    const uint8_t* p = nullptr;
    size_t n = 0;
    SSL_get0_ocsp_response(c.ssl(), &p, &n);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(p), n), der);
  }
  // The RSA certificate has no response configured.
  auto s = ctx->newSession();
  ClientOptions o;
  o.sni = "other.test";
  o.ocsp = true;
  Client c(o);
  handshake(c, *s);
  const uint8_t* p = nullptr;
  size_t n = 0;
  SSL_get0_ocsp_response(c.ssl(), &p, &n);
  EXPECT_EQ(n, 0u);
}

TEST(Tls, ChainFileWithIntermediates) {
  std::string chain = certPath("ecdsa-chain.pem");
  {
    std::ifstream leaf(certPath("ecdsa.pem")), ca(certPath("ca.pem"));
    std::ofstream out(chain);
    out << leaf.rdbuf() << ca.rdbuf();
  }
  TlsConfig config = defaultConfig();
  config.certificates[0].certFile = chain;
  auto ctx = makeContext(config);
  auto s = ctx->newSession();
  Client c({});
  handshake(c, *s);
  EXPECT_EQ(sk_X509_num(SSL_get_peer_full_cert_chain(c.ssl())), 2u);
}

TEST(Tls, BadFilesGiveClearErrors) {
  const std::string missing = certPath("missing.pem");
  const std::string notPem = certPath("not-pem.txt");
  writeFile(notPem, "hello, I am not a certificate\n");
  auto with = [](std::string cert, std::string key, std::string ocsp = "") {
    TlsConfig c;
    c.certificates = {certificate(cert, key, ocsp)};
    return c;
  };
  auto has = [](const std::string& err, std::initializer_list<std::string> parts) {
    for (const std::string& p : parts) {
      if (err.find(p) == std::string::npos) return false;
    }
    return true;
  };
  std::string ecdsaPem = certPath("ecdsa.pem"), ecdsaKey = certPath("ecdsa.key");
  std::string e;

  e = loadError(with(missing, ecdsaKey));
  EXPECT_TRUE(has(e, {missing, "No such file"})) << e;
  e = loadError(with(notPem, ecdsaKey));
  EXPECT_TRUE(has(e, {notPem, "no PEM certificate"})) << e;
  e = loadError(with(ecdsaPem, missing));
  EXPECT_TRUE(has(e, {missing, "key file"})) << e;
  e = loadError(with(ecdsaPem, notPem));
  EXPECT_TRUE(has(e, {notPem, "no PEM private key"})) << e;
  e = loadError(with(ecdsaPem, ecdsaPem));  // a certificate where the key should be
  EXPECT_TRUE(has(e, {ecdsaPem, "no PEM private key"})) << e;
  e = loadError(with(ecdsaPem, certPath("rsa.key")));
  EXPECT_TRUE(has(e, {certPath("rsa.key"), "does not match", ecdsaPem})) << e;
  e = loadError(with(ecdsaPem, ecdsaKey, missing));
  EXPECT_TRUE(has(e, {missing, "OCSP"})) << e;
  e = loadError(with(ecdsaPem, ecdsaKey, notPem));
  EXPECT_TRUE(has(e, {notPem, "not a DER OCSP response"})) << e;

  e = loadError(TlsConfig{});
  EXPECT_TRUE(has(e, {"no certificate"})) << e;
  TlsConfig old = defaultConfig();
  old.minVersion = 0x0301;
  e = loadError(old);
  EXPECT_TRUE(has(e, {"minVersion"})) << e;
  TlsConfig badAlpn = defaultConfig();
  badAlpn.alpn = {""};
  e = loadError(badAlpn);
  EXPECT_TRUE(has(e, {"ALPN"})) << e;
}

TEST(Tls, EncryptedKeyNeedsItsPassphrase) {
  // ecdsa.key, encrypted with AES-256-CBC under a passphrase.
  std::string plain = readFile(certPath("ecdsa.key"));
  bssl::UniquePtr<BIO> in(BIO_new_mem_buf(plain.data(), plain.size()));
  bssl::UniquePtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
  ASSERT_TRUE(key);
  bssl::UniquePtr<BIO> out(BIO_new(BIO_s_mem()));
  static const char kPass[] = "open sesame";
  ASSERT_TRUE(PEM_write_bio_PKCS8PrivateKey(out.get(), key.get(), EVP_aes_256_cbc(), const_cast<char*>(kPass),
                                            int(sizeof kPass - 1), nullptr, nullptr));
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(out.get(), &data, &len);
  std::string encrypted(reinterpret_cast<const char*>(data), len);
  ASSERT_NE(encrypted.find("ENCRYPTED"), std::string::npos);

  auto with = [&](std::string passphrase) {
    TlsConfig c;
    CertificateConfig cert = certificate(certPath("ecdsa.pem"), "encrypted.key");
    cert.certPem = readFile(certPath("ecdsa.pem"));
    cert.keyPem = encrypted;
    cert.keyPassphrase = std::move(passphrase);
    c.certificates = {cert};
    return c;
  };
  std::string e = loadError(with(""));
  EXPECT_NE(e.find("encrypted.key: the key is encrypted and no passphrase was given"), std::string::npos) << e;
  e = loadError(with("wrong"));
  EXPECT_NE(e.find("could not be decrypted with the passphrase given"), std::string::npos) << e;
  auto ctx = makeContext(with(kPass));
  ASSERT_TRUE(ctx);
  auto s = ctx->newSession();
  Client c{ClientOptions{}};
  handshake(c, *s);
}

TEST(Tls, Pkcs12Archive) {
  std::string d = CertEnvironment::dir.string();
  std::string cmd = "cd '" + d + "' && openssl pkcs12 -export -in ecdsa.pem -inkey ecdsa.key -certfile ca.pem "
                    "-passout pass:pw -out server.pfx >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto with = [](std::string passphrase, std::string der) {
    TlsConfig config;
    CertificateConfig c;
    c.certFile = c.keyFile = "server.pfx";
    c.pfx = std::move(der);
    c.keyPassphrase = std::move(passphrase);
    config.certificates = {c};
    return config;
  };
  std::string der = readFile(certPath("server.pfx"));
  ASSERT_FALSE(der.empty());
  auto ctx = makeContext(with("pw", der));
  ASSERT_TRUE(ctx);
  auto s = ctx->newSession();
  Client c{ClientOptions{}};  // verifies the chain against ca.pem
  handshake(c, *s);
  std::string e = loadError(with("wrong", der));
  EXPECT_NE(e.find("server.pfx: not a PKCS#12 archive, or not with this passphrase"), std::string::npos) << e;
  e = loadError(with("pw", "garbage"));
  EXPECT_NE(e.find("server.pfx"), std::string::npos) << e;
}

// A client certificate the test CA signs for clientAuth (the leaves
// gen-test-certs makes are for serverAuth only).
std::string clientCertificate() {
  static const std::string made = [] {
    std::string d = CertEnvironment::dir.string();
    std::string cmd = "cd '" + d + "' && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                      "-keyout client.key -out client.csr -subj /CN=client >/dev/null 2>&1 && "
                      "printf 'extendedKeyUsage=clientAuth\\n' > client.ext && "
                      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                      "-out client.pem -extfile client.ext >/dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return certPath("client.pem");
  }();
  return made;
}

TlsConfig clientCertConfig(ClientCerts mode) {
  TlsConfig config = defaultConfig();
  config.clientCerts = mode;
  config.clientCaPem = readFile(certPath("ca.pem"));
  return config;
}

// A handshake with the trusted client certificate, which verifies.
std::unique_ptr<TlsSession> trustedClientHandshake(TlsContext& ctx) {
  ClientOptions trusted;
  trusted.clientCert = clientCertificate();
  trusted.clientKey = certPath("client.key");
  auto s = ctx.newSession();
  Client c(trusted);
  handshake(c, *s);
  EXPECT_EQ(s->peerVerifyError(), "");
  return s;
}

TEST(Tls, ClientCertificatesRequested) {
  auto ctx = makeContext(clientCertConfig(ClientCerts::kRequest));
  ASSERT_TRUE(ctx);
  auto s = trustedClientHandshake(*ctx);
  std::string der = s->peerCertificate();
  const uint8_t* p = reinterpret_cast<const uint8_t*>(der.data());
  bssl::UniquePtr<X509> x(d2i_X509(nullptr, &p, long(der.size())));
  ASSERT_TRUE(x);
  char cn[64] = "";
  X509_NAME_get_text_by_NID(X509_get_subject_name(x.get()), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "client");
  EXPECT_EQ(s->cipherName(), "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(s->cipherStandardName(), "TLS_AES_128_GCM_SHA256");

  // None: served, and said so.
  auto none = ctx->newSession();
  Client bare{ClientOptions{}};
  handshake(bare, *none);
  EXPECT_EQ(none->peerCertificate(), "");
  EXPECT_EQ(none->peerVerifyError(), "UNABLE_TO_GET_ISSUER_CERT");

  // A server certificate is no client certificate.
  ClientOptions wrong;
  wrong.clientCert = certPath("ecdsa.pem");
  wrong.clientKey = certPath("ecdsa.key");
  auto other = ctx->newSession();
  Client w(wrong);
  handshake(w, *other);
  EXPECT_EQ(other->peerVerifyError(), "INVALID_PURPOSE");
}

TEST(Tls, ClientCertificatesRequired) {
  TlsConfig config = clientCertConfig(ClientCerts::kRequire);
  auto ctx = makeContext(config);
  ASSERT_TRUE(ctx);
  trustedClientHandshake(*ctx);

  for (bool withWrongCert : {false, true}) {
    ClientOptions o;
    if (withWrongCert) {
      o.clientCert = certPath("ecdsa.pem");
      o.clientKey = certPath("ecdsa.key");
    }
    auto refused = ctx->newSession();
    Client r(o);
    EXPECT_EQ(pump(r, *refused), Status::kError) << withWrongCert;
  }

  TlsConfig badCa = config;
  badCa.clientCaPem = "not a certificate";
  std::string e = loadError(badCa);
  EXPECT_NE(e.find("client CA"), std::string::npos) << e;
}

TEST(Tls, SessionOutlivesContext) {
  auto ctx = makeContext();
  auto s = ctx->newSession();
  ctx.reset();  // a reload dropped the context; the open connection carries on
  Client c({});
  handshake(c, *s);
  EXPECT_EQ(s->version(), "TLSv1.3");
}

TEST(Tls, ManyThreadsShareOneContext) {
  auto ctx = makeContext();
  std::atomic<int> resumed{0}, done{0};
  std::atomic<bool> stop{false};
  std::thread rotator([&] {
    while (!stop) {
      ctx->rotateTicketKeys();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      bssl::UniquePtr<SSL_SESSION> saved;
      for (int i = 0; i < 10; ++i) {
        ClientOptions o;
        o.maxVersion = t % 2 ? TLS1_2_VERSION : TLS1_3_VERSION;
        o.session = saved.get();
        auto s = ctx->newSession();
        Client c(o);
        if (pump(c, *s) == Status::kOk && s->handshakeDone()) done++;
        if (s->resumed()) resumed++;
        if (c.session()) {
          SSL_SESSION_up_ref(c.session());
          saved.reset(c.session());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  stop = true;
  rotator.join();
  EXPECT_EQ(done.load(), 40);
  EXPECT_GT(resumed.load(), 0);  // keys live 20 to 40 ms, handshakes take about 1
}

}  // namespace
}  // namespace kuai::tls
