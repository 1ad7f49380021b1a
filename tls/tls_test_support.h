// What the TLS unit tests share: certificates from tools/gen-test-certs (run
// once per test binary into a temp folder), a BoringSSL client driven in
// memory, and pump(), which hands every byte one side writes to the other.
#pragma once

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tls/tls.h"

// One translation unit per test binary includes this (hence no inline).
namespace kuai::tls::testing_support {

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

}  // namespace kuai::tls::testing_support
