// BoringSSL implementation of tls.h.
//
// Layout:
//   - one SSL_CTX per configured certificate, all set up identically; sessions
//     start on the first (default) one and the SNI callback moves them to the
//     one whose subjectAltName matches (SSL_set_SSL_CTX). The session cache and
//     the ticket callback stay on the first SSL_CTX, as BoringSSL keeps using
//     the initial context for those.
//   - session tickets are encrypted with keys we generate (AES-256-CBC +
//     HMAC-SHA256 through SSL_CTX_set_tlsext_ticket_key_cb); a key is used for
//     new tickets for ticketKeyRotateSeconds, then kept one more period to
//     decrypt (tickets it opens are renewed under the current key).
//   - each session talks to BoringSSL through two memory BIOs; ciphertext is
//     fed in bounded slices so the read BIO never holds more than one slice.
#include "tls/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/pkcs8.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>

namespace kuai::tls {
namespace {

// TLS 1.2 suites: forward-secret ECDHE with AEADs only (no CBC, no RSA key
// exchange, no SHA-1). Brackets are BoringSSL's equal-preference groups: the
// server prefers its own order except that a client listing ChaCha20 first (no
// AES hardware) gets it. TLS 1.3 suites are fixed by BoringSSL (all AEAD).
constexpr const char* kCipherList =
    "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:"
    "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]:"
    "ECDHE-RSA-AES256-GCM-SHA384";

// Ciphertext is handed to BoringSSL at most this much at a time: a little more
// than one full record, so the read BIO stays small however much arrives.
constexpr size_t kFeedSlice = 32 * 1024;
// SSL_read target per call; one record holds at most 16 KiB of plaintext.
constexpr size_t kReadChunk = 16 * 1024;

// The error queue as one readable line ("no shared cipher; ..."), then clears it.
std::string drainErrors() {
  std::string out;
  while (uint32_t e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    std::string r = reason ? reason : ("error " + std::to_string(ERR_GET_REASON(e)));
    for (char& c : r) c = c == '_' ? ' ' : char(std::tolower(static_cast<unsigned char>(c)));
    if (out.find(r) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += r;
  }
  return out;
}

bool readFile(const std::string& path, std::string& data, std::string& err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err = std::strerror(errno);
    return false;
  }
  data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) {
    err = "read error";
    return false;
  }
  return true;
}

std::string lowerHost(std::string_view name) {
  std::string s(name);
  if (!s.empty() && s.back() == '.') s.pop_back();
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// DNS names the leaf answers to: subjectAltName DNS entries, or the subject CN
// when the certificate has none.
std::vector<std::string> leafNames(X509* leaf) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (size_t i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const ASN1_STRING* s = gn->d.dNSName;
      names.push_back(lowerHost(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                                 size_t(ASN1_STRING_length(s)))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    char cn[256];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof cn);
    if (n > 0) names.push_back(lowerHost(std::string_view(cn, size_t(n))));
  }
  return names;
}

// "*.example.com" matches exactly one label in front of "example.com".
bool wildcardMatch(const std::string& pattern, const std::string& host) {
  if (pattern.size() < 3 || pattern[0] != '*' || pattern[1] != '.') return false;
  size_t dot = host.find('.');
  return dot != std::string::npos && dot > 0 && host.compare(dot, std::string::npos, pattern, 1) == 0;
}

int noPassword(char*, int, int, void*) { return 0; }

// A key's passphrase (arg: the std::string), for PEM_read_bio_PrivateKey.
int givenPassphrase(char* buf, int size, int, void* arg) {
  const auto* pass = static_cast<const std::string*>(arg);
  if (!pass || pass->empty() || pass->size() > size_t(size)) return 0;
  std::memcpy(buf, pass->data(), pass->size());
  return int(pass->size());
}

// With ClientCerts::kRequest: any client certificate is taken; whether it
// verified is asked after the handshake (SSL_get_verify_result).
int acceptAnyClientCert(int, X509_STORE_CTX*) { return 1; }

// Node's name for an X509 verification result (what socket.authorizationError
// holds).
std::string_view verifyErrorName(long result) {
  switch (result) {
    case X509_V_OK: return {};
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: return "UNABLE_TO_GET_ISSUER_CERT";
    case X509_V_ERR_UNABLE_TO_GET_CRL: return "UNABLE_TO_GET_CRL";
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE: return "UNABLE_TO_DECRYPT_CERT_SIGNATURE";
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: return "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: return "CERT_SIGNATURE_FAILURE";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "CERT_NOT_YET_VALID";
    case X509_V_ERR_CERT_HAS_EXPIRED: return "CERT_HAS_EXPIRED";
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD: return "ERROR_IN_CERT_NOT_BEFORE_FIELD";
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD: return "ERROR_IN_CERT_NOT_AFTER_FIELD";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return "DEPTH_ZERO_SELF_SIGNED_CERT";
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return "SELF_SIGNED_CERT_IN_CHAIN";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: return "UNABLE_TO_GET_ISSUER_CERT_LOCALLY";
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: return "UNABLE_TO_VERIFY_LEAF_SIGNATURE";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG: return "CERT_CHAIN_TOO_LONG";
    case X509_V_ERR_CERT_REVOKED: return "CERT_REVOKED";
    case X509_V_ERR_INVALID_CA: return "INVALID_CA";
    case X509_V_ERR_PATH_LENGTH_EXCEEDED: return "PATH_LENGTH_EXCEEDED";
    case X509_V_ERR_INVALID_PURPOSE: return "INVALID_PURPOSE";
    case X509_V_ERR_CERT_UNTRUSTED: return "CERT_UNTRUSTED";
    case X509_V_ERR_CERT_REJECTED: return "CERT_REJECTED";
    default: return "UNSPECIFIED";
  }
}

// Index of our Context pointer in each SSL_CTX's ex_data.
int contextIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Session-ticket keys for one context: the current key seals new tickets, the
// previous one still opens tickets sealed before the last rotation. Shared by
// all reactor threads, hence the mutex (held for a few copies per handshake).
class TicketKeys {
 public:
  struct Key {
    uint8_t name[SSL_TICKET_KEY_NAME_LEN];
    uint8_t aes[32];
    uint8_t hmac[32];
  };

  explicit TicketKeys(uint32_t rotateSeconds) : period_(rotateSeconds) {
    generate(current_);
    rotatedAt_ = Clock::now();
  }

  // The key to seal a new ticket with.
  Key sealing() {
    std::lock_guard<std::mutex> lock(mu_);
    maybeRotate();
    return current_;
  }

  // Finds the key named `name`: 1 for the current key, 2 for the previous one
  // (the ticket should be renewed), 0 when it is unknown or expired.
  int opening(const uint8_t* name, Key& key) {
    std::lock_guard<std::mutex> lock(mu_);
    maybeRotate();
    if (std::memcmp(name, current_.name, sizeof current_.name) == 0) {
      key = current_;
      return 1;
    }
    if (hasPrevious_ && std::memcmp(name, previous_.name, sizeof previous_.name) == 0) {
      key = previous_;
      return 2;
    }
    return 0;
  }

  void rotate() {
    std::lock_guard<std::mutex> lock(mu_);
    rotateLocked();
  }

 private:
  using Clock = std::chrono::steady_clock;

  static void generate(Key& k) {
    RAND_bytes(k.name, sizeof k.name);
    RAND_bytes(k.aes, sizeof k.aes);
    RAND_bytes(k.hmac, sizeof k.hmac);
  }

  void rotateLocked() {
    previous_ = current_;
    hasPrevious_ = true;
    generate(current_);
    rotatedAt_ = Clock::now();
  }

  void maybeRotate() {
    auto age = Clock::now() - rotatedAt_;
    if (age < period_) return;
    rotateLocked();
    // Idle for two periods or more: the old current key is too old to keep.
    if (age >= 2 * period_) hasPrevious_ = false;
  }

  std::mutex mu_;
  const std::chrono::seconds period_;
  Key current_{};
  Key previous_{};
  bool hasPrevious_ = false;
  Clock::time_point rotatedAt_;
};

class Context;

// One configured certificate: its own SSL_CTX (certificate, chain, key, OCSP
// response) and the names it is chosen for.
struct Certificate {
  bssl::UniquePtr<SSL_CTX> ctx;
  std::vector<std::string> names;
};

// The loaded configuration behind TlsContext. Created once per (re)load on the
// main thread, then shared read-only by every reactor thread; sessions keep it
// alive through a shared_ptr so a reload can drop it while connections remain.
class Context final : public TlsContext, public std::enable_shared_from_this<Context> {
 public:
  explicit Context(const TlsConfig& config)
      : config_(config), tickets_(std::max<uint32_t>(config.ticketKeyRotateSeconds, 1)) {}

  bool load(std::string& err);
  std::unique_ptr<TlsSession> newSession() override;
  void rotateTicketKeys() override { tickets_.rotate(); }

 private:
  static Context* from(SSL* ssl) {
    return static_cast<Context*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), contextIndex()));
  }
  static int onServerName(SSL* ssl, int* alert, void* arg);
  static int onAlpn(SSL* ssl, const uint8_t** out, uint8_t* outLen, const uint8_t* in, unsigned inLen,
                    void* arg);
  static int onTicketKey(SSL* ssl, uint8_t* name, uint8_t* iv, EVP_CIPHER_CTX* cipher, HMAC_CTX* hmac,
                         int encrypt);

  bool loadCertificate(const CertificateConfig& c, std::string& err);
  bool configure(SSL_CTX* ctx, size_t index, std::string& err);
  size_t pick(const std::string& host) const;

  const TlsConfig config_;
  std::vector<Certificate> certs_;
  std::vector<bssl::UniquePtr<X509>> clientCas_;  // config_.clientCaPem, parsed
  TicketKeys tickets_;
};

// The write side of a session: BoringSSL's records are appended to the
// session's own buffer (wire_), which takeOutput hands over by swapping. A
// memory BIO would cost a second copy of every record, and a zero-filled
// buffer to read it into.
const BIO_METHOD* appendingBio() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(0, "kuai append");
    BIO_meth_set_write(m, [](BIO* b, const char* data, int len) -> int {
      static_cast<std::string*>(BIO_get_data(b))->append(data, size_t(len));
      return len;
    });
    BIO_meth_set_ctrl(m, [](BIO*, int cmd, long, void*) -> long { return cmd == BIO_CTRL_FLUSH ? 1 : 0; });
    return m;
  }();
  return method;
}

// A TLS server connection over a memory BIO (ciphertext in) and an appending
// one (ciphertext out). Owned by one connection on one reactor thread; keeps
// its Context alive.
class Session final : public TlsSession {
 public:
  Session(std::shared_ptr<Context> context, SSL* ssl, BIO* in, BIO* out)
      : context_(std::move(context)), ssl_(ssl), in_(in), out_(out) {
    BIO_set_data(out_, &wire_);
    BIO_set_init(out_, 1);
  }

  Status onCiphertext(const char* data, size_t len, std::string& plaintext) override;
  Status writePlaintext(const char* data, size_t len) override;
  void takeOutput(std::string& out) override;
  bool hasOutput() const override { return !wire_.empty(); }
  void shutdown() override;

  bool handshakeDone() const override { return SSL_is_init_finished(ssl_.get()); }
  std::string_view alpnSelected() const override {
    const uint8_t* p = nullptr;
    unsigned n = 0;
    SSL_get0_alpn_selected(ssl_.get(), &p, &n);
    return {reinterpret_cast<const char*>(p), n};
  }
  std::string_view serverName() const override {
    const char* name = SSL_get_servername(ssl_.get(), TLSEXT_NAMETYPE_host_name);
    return name ? std::string_view(name) : std::string_view();
  }
  std::string_view version() const override {
    return handshakeDone() ? std::string_view(SSL_get_version(ssl_.get())) : std::string_view();
  }
  bool resumed() const override { return SSL_session_reused(ssl_.get()); }
  const std::string& error() const override { return error_; }
  std::string_view cipherName() const override {
    const SSL_CIPHER* c = SSL_get_current_cipher(ssl_.get());
    return c ? std::string_view(SSL_CIPHER_get_name(c)) : std::string_view();
  }
  std::string_view cipherStandardName() const override {
    const SSL_CIPHER* c = SSL_get_current_cipher(ssl_.get());
    return c ? std::string_view(SSL_CIPHER_standard_name(c)) : std::string_view();
  }
  std::string peerCertificate() const override {
    bssl::UniquePtr<X509> x(SSL_get_peer_certificate(ssl_.get()));
    if (!x) return {};
    uint8_t* der = nullptr;
    int n = i2d_X509(x.get(), &der);
    if (n <= 0) return {};
    std::string out(reinterpret_cast<const char*>(der), size_t(n));
    OPENSSL_free(der);
    return out;
  }
  std::string_view peerVerifyError() const override {
    bssl::UniquePtr<X509> x(SSL_get_peer_certificate(ssl_.get()));
    if (!x) return "UNABLE_TO_GET_ISSUER_CERT";  // Node's word for no certificate
    return verifyErrorName(SSL_get_verify_result(ssl_.get()));
  }

 private:
  enum class State { kSniffing, kTls, kClosed, kFailed, kPlainHttp };

  Status sniff(const char*& data, size_t& len);
  Status drive(std::string& plaintext);
  Status fail(const char* what, int sslError);

  std::shared_ptr<Context> context_;  // declared first: outlives ssl_
  std::string wire_;                  // outlives ssl_ too (its BIO writes here)
  bssl::UniquePtr<SSL> ssl_;
  BIO* in_;   // owned by ssl_: ciphertext from the peer
  BIO* out_;  // owned by ssl_: ciphertext for the peer, appended to wire_
  State state_ = State::kSniffing;
  std::string head_;  // first bytes, kept while deciding TLS or plain HTTP
  bool shutdownSent_ = false;
  std::string error_;
};

// --- Context ---------------------------------------------------------------

bool Context::load(std::string& err) {
  if (config_.certificates.empty()) {
    err = "tls: no certificate configured";
    return false;
  }
  if (config_.minVersion != TLS1_2_VERSION && config_.minVersion != TLS1_3_VERSION) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "tls: minVersion 0x%04x unsupported (0x0303 = TLS 1.2, 0x0304 = TLS 1.3)",
                  config_.minVersion);
    err = buf;
    return false;
  }
  for (const std::string& p : config_.alpn) {
    if (p.empty() || p.size() > 255) {
      err = "tls: ALPN protocol names must be 1 to 255 bytes";
      return false;
    }
  }
  if (config_.clientCerts != ClientCerts::kNone && !config_.clientCaPem.empty()) {
    bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(config_.clientCaPem.data(), config_.clientCaPem.size()));
    for (;;) {
      bssl::UniquePtr<X509> x(PEM_read_bio_X509(bio.get(), nullptr, noPassword, nullptr));
      if (!x) break;
      clientCas_.push_back(std::move(x));
    }
    ERR_clear_error();
    if (clientCas_.empty()) {
      err = "tls: the client CA certificates (ca): no PEM certificate found";
      return false;
    }
  }
  for (const CertificateConfig& c : config_.certificates) {
    if (!loadCertificate(c, err)) return false;
  }
  return true;
}

// A PKCS#12 archive's key, certificate and chain as PEM text (the form the
// rest of loading reads).
bool pfxToPem(const std::string& der, const std::string& passphrase, std::string& certPem, std::string& keyPem,
              std::string& why) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(der.data());
  bssl::UniquePtr<PKCS12> p12(d2i_PKCS12(nullptr, &p, der.size()));
  EVP_PKEY* key = nullptr;
  X509* leaf = nullptr;
  STACK_OF(X509)* chain = nullptr;
  if (!p12 || !PKCS12_parse(p12.get(), passphrase.c_str(), &key, &leaf, &chain)) {
    why = "not a PKCS#12 archive, or not with this passphrase (" + drainErrors() + ")";
    return false;
  }
  bssl::UniquePtr<EVP_PKEY> ownedKey(key);
  bssl::UniquePtr<X509> ownedLeaf(leaf);
  bssl::UniquePtr<STACK_OF(X509)> ownedChain(chain);
  if (!key || !leaf) {
    why = "the PKCS#12 archive holds no private key and certificate";
    return false;
  }
  bssl::UniquePtr<BIO> certs(BIO_new(BIO_s_mem()));
  bssl::UniquePtr<BIO> keys(BIO_new(BIO_s_mem()));
  bool ok = PEM_write_bio_X509(certs.get(), leaf) &&
            PEM_write_bio_PrivateKey(keys.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  for (size_t i = 0; ok && chain && i < sk_X509_num(chain); ++i) ok = PEM_write_bio_X509(certs.get(), sk_X509_value(chain, i));
  if (!ok) {
    why = drainErrors();
    return false;
  }
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(certs.get(), &data, &len);
  certPem.assign(reinterpret_cast<const char*>(data), len);
  BIO_mem_contents(keys.get(), &data, &len);
  keyPem.assign(reinterpret_cast<const char*>(data), len);
  return true;
}

bool Context::loadCertificate(const CertificateConfig& given, std::string& err) {
  ERR_clear_error();
  std::string pem, why;
  CertificateConfig fromPfx;
  if (!given.pfx.empty()) {
    fromPfx = given;
    fromPfx.keyPassphrase.clear();
    if (!pfxToPem(given.pfx, given.keyPassphrase, fromPfx.certPem, fromPfx.keyPem, why)) {
      err = "tls: " + given.certFile + ": " + why;
      return false;
    }
  }
  const CertificateConfig& c = given.pfx.empty() ? given : fromPfx;
  if (!c.certPem.empty()) {
    pem = c.certPem;
  } else if (!readFile(c.certFile, pem, why)) {
    err = "tls: cannot read certificate file " + c.certFile + ": " + why;
    return false;
  }
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), pem.size()));
  bssl::UniquePtr<X509> leaf(PEM_read_bio_X509(bio.get(), nullptr, noPassword, nullptr));
  if (!leaf) {
    err = "tls: certificate file " + c.certFile + ": no PEM certificate found";
    ERR_clear_error();
    return false;
  }
  std::vector<bssl::UniquePtr<X509>> chain;
  for (;;) {
    bssl::UniquePtr<X509> x(PEM_read_bio_X509(bio.get(), nullptr, noPassword, nullptr));
    if (x) {
      chain.push_back(std::move(x));
      continue;
    }
    uint32_t e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) break;  // end of file
    err = "tls: certificate file " + c.certFile + ": certificate " + std::to_string(chain.size() + 2) +
          " is malformed (" + drainErrors() + ")";
    return false;
  }
  ERR_clear_error();

  std::string keyPem;
  if (!c.keyPem.empty()) {
    keyPem = c.keyPem;
  } else if (!readFile(c.keyFile, keyPem, why)) {
    err = "tls: cannot read key file " + c.keyFile + ": " + why;
    return false;
  }
  bssl::UniquePtr<BIO> keyBio(BIO_new_mem_buf(keyPem.data(), keyPem.size()));
  bssl::UniquePtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(keyBio.get(), nullptr, givenPassphrase,
                                                         const_cast<std::string*>(&c.keyPassphrase)));
  if (!key) {
    bool encrypted = keyPem.find("ENCRYPTED") != std::string::npos;
    err = "tls: key file " + c.keyFile +
          (!encrypted                  ? ": no PEM private key found"
           : c.keyPassphrase.empty() ? ": the key is encrypted and no passphrase was given"
                                      : ": the key could not be decrypted with the passphrase given");
    ERR_clear_error();
    return false;
  }
  int keyType = EVP_PKEY_id(key.get());
  if (keyType != EVP_PKEY_EC && keyType != EVP_PKEY_RSA && keyType != EVP_PKEY_ED25519) {
    err = "tls: key file " + c.keyFile + ": unsupported key type (use ECDSA or RSA)";
    return false;
  }

  Certificate cert;
  cert.ctx.reset(SSL_CTX_new(TLS_method()));
  if (!cert.ctx) {
    err = "tls: SSL_CTX_new failed: " + drainErrors();
    return false;
  }
  SSL_CTX* ctx = cert.ctx.get();
  if (!SSL_CTX_use_certificate(ctx, leaf.get())) {
    err = "tls: certificate file " + c.certFile + ": unusable certificate (" + drainErrors() + ")";
    return false;
  }
  for (auto& x : chain) {
    if (!SSL_CTX_add1_chain_cert(ctx, x.get())) {
      err = "tls: certificate file " + c.certFile + ": bad chain (" + drainErrors() + ")";
      return false;
    }
  }
  if (!SSL_CTX_use_PrivateKey(ctx, key.get()) || !SSL_CTX_check_private_key(ctx)) {
    err = "tls: key file " + c.keyFile + " does not match the certificate in " + c.certFile;
    ERR_clear_error();
    return false;
  }
  if (!c.ocspFile.empty()) {
    std::string der;
    if (!readFile(c.ocspFile, der, why)) {
      err = "tls: cannot read OCSP response file " + c.ocspFile + ": " + why;
      return false;
    }
    if (der.empty() || static_cast<uint8_t>(der[0]) != 0x30) {
      err = "tls: OCSP response file " + c.ocspFile + ": not a DER OCSP response";
      return false;
    }
    if (!SSL_CTX_set_ocsp_response(ctx, reinterpret_cast<const uint8_t*>(der.data()), der.size())) {
      err = "tls: OCSP response file " + c.ocspFile + ": " + drainErrors();
      return false;
    }
  }
  if (!configure(ctx, certs_.size(), err)) return false;
  cert.names = leafNames(leaf.get());
  certs_.push_back(std::move(cert));
  return true;
}

// Settings shared by every per-certificate SSL_CTX (`index` is its place in
// the configuration).
bool Context::configure(SSL_CTX* ctx, size_t index, std::string& err) {
  SSL_CTX_set_ex_data(ctx, contextIndex(), this);
  if (!SSL_CTX_set_min_proto_version(ctx, config_.minVersion) ||
      !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_strict_cipher_list(ctx, kCipherList)) {
    err = "tls: cannot set protocol versions or ciphers: " + drainErrors();
    return false;
  }
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Sessions are tied to the certificate they were made under: one made for
  // other.test does not resume on a connection that SNI sent to kuai.test.
  std::string sidContext = "kuai/" + std::to_string(index);
  SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const uint8_t*>(sidContext.data()), sidContext.size());
  if (config_.sessionCacheSize > 0) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, static_cast<unsigned long>(config_.sessionCacheSize));
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  if (config_.ticketKeyRotateSeconds > 0) {
    SSL_CTX_set_tlsext_ticket_key_cb(ctx, onTicketKey);
  } else {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }
  SSL_CTX_set_tlsext_servername_callback(ctx, onServerName);
  if (!config_.alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx, onAlpn, nullptr);
  if (config_.clientCerts != ClientCerts::kNone) {
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    if (clientCas_.empty()) X509_STORE_set_default_paths(store);
    for (const auto& ca : clientCas_) {
      if (!X509_STORE_add_cert(store, ca.get()) || !SSL_CTX_add_client_CA(ctx, ca.get())) {
        err = "tls: the client CA certificates (ca): " + drainErrors();
        return false;
      }
    }
    bool require = config_.clientCerts == ClientCerts::kRequire;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (require ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       require ? nullptr : acceptAnyClientCert);
  }
  return true;
}

// Exact names first, then wildcards; the first certificate when nothing matches.
size_t Context::pick(const std::string& host) const {
  for (size_t i = 0; i < certs_.size(); ++i) {
    for (const std::string& n : certs_[i].names) {
      if (n == host) return i;
    }
  }
  for (size_t i = 0; i < certs_.size(); ++i) {
    for (const std::string& n : certs_[i].names) {
      if (wildcardMatch(n, host)) return i;
    }
  }
  return 0;
}

int Context::onServerName(SSL* ssl, int*, void*) {
  Context* self = from(ssl);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!self || !name || self->certs_.size() < 2) return SSL_TLSEXT_ERR_OK;
  size_t i = self->pick(lowerHost(name));
  if (i != 0) SSL_set_SSL_CTX(ssl, self->certs_[i].ctx.get());
  return SSL_TLSEXT_ERR_OK;
}

// Our preference order wins; a client that offers ALPN but none of ours gets
// the no_application_protocol alert (RFC 7301). Clients without ALPN never get
// here and proceed without a protocol.
int Context::onAlpn(SSL* ssl, const uint8_t** out, uint8_t* outLen, const uint8_t* in, unsigned inLen, void*) {
  Context* self = from(ssl);
  if (!self) return SSL_TLSEXT_ERR_NOACK;
  for (const std::string& want : self->config_.alpn) {
    for (unsigned i = 0; i < inLen;) {
      unsigned n = in[i];
      if (i + 1 + n > inLen) break;
      if (n == want.size() && std::memcmp(in + i + 1, want.data(), n) == 0) {
        *out = in + i + 1;
        *outLen = uint8_t(n);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + n;
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int Context::onTicketKey(SSL* ssl, uint8_t* name, uint8_t* iv, EVP_CIPHER_CTX* cipher, HMAC_CTX* hmac,
                         int encrypt) {
  Context* self = from(ssl);
  if (!self) return encrypt ? -1 : 0;
  TicketKeys::Key key;
  int result = 1;
  if (encrypt) {
    key = self->tickets_.sealing();
    std::memcpy(name, key.name, sizeof key.name);
    if (!RAND_bytes(iv, EVP_CIPHER_iv_length(EVP_aes_256_cbc()))) return -1;
  } else {
    result = self->tickets_.opening(name, key);
    if (result == 0) return 0;
  }
  if (!HMAC_Init_ex(hmac, key.hmac, sizeof key.hmac, EVP_sha256(), nullptr)) return -1;
  int ok = encrypt ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv)
                   : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv);
  OPENSSL_cleanse(&key, sizeof key);
  return ok ? result : -1;
}

std::unique_ptr<TlsSession> Context::newSession() {
  SSL* ssl = SSL_new(certs_.front().ctx.get());
  if (!ssl) return nullptr;
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(appendingBio());
  if (!in || !out) {
    BIO_free(in);
    BIO_free(out);
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_bio(ssl, in, out);  // ssl owns both from here
  SSL_set_accept_state(ssl);
  return std::make_unique<Session>(shared_from_this(), ssl, in, out);
}

// --- Session ---------------------------------------------------------------

// What a plain-text HTTP request starts with (first four bytes of the method).
constexpr std::string_view kMethodHeads[] = {"GET ", "POST", "HEAD", "PUT ", "OPTI",
                                             "DELE", "PATC", "CONN", "TRAC", "PRI "};

TlsSession::Status Session::sniff(const char*& data, size_t& len) {
  size_t take = std::min(len, size_t(4) - head_.size());
  head_.append(data, take);
  data += take;
  len -= take;
  if (static_cast<uint8_t>(head_[0]) == 0x16) {  // handshake record: TLS
    state_ = State::kTls;
    BIO_write(in_, head_.data(), int(head_.size()));
    head_.clear();
    head_.shrink_to_fit();
    return Status::kOk;
  }
  bool prefix = false;
  for (std::string_view m : kMethodHeads) {
    if (m.substr(0, head_.size()) == head_) prefix = true;
  }
  if (prefix && head_.size() == 4) {
    state_ = State::kPlainHttp;
    error_ = "plain HTTP request on a TLS port";
    return Status::kPlainHttp;
  }
  if (prefix) return Status::kOk;  // "GE": wait for more
  state_ = State::kFailed;
  char buf[96];
  std::snprintf(buf, sizeof buf, "not a TLS handshake: connection starts with byte 0x%02x",
                static_cast<uint8_t>(head_[0]));
  error_ = buf;
  return Status::kError;
}

TlsSession::Status Session::onCiphertext(const char* data, size_t len, std::string& plaintext) {
  switch (state_) {
    case State::kFailed: return Status::kError;
    case State::kClosed: return Status::kClosed;
    case State::kPlainHttp: return Status::kPlainHttp;
    case State::kSniffing:
      if (len == 0) return Status::kOk;
      if (Status s = sniff(data, len); state_ != State::kTls) return s;
      if (len == 0) return drive(plaintext);
      break;
    case State::kTls: break;
  }
  do {
    size_t n = std::min(len, kFeedSlice);
    BIO_write(in_, data, int(n));  // memory BIO: always accepts everything
    data += n;
    len -= n;
    if (Status s = drive(plaintext); s != Status::kOk) return s;
  } while (len > 0);
  return Status::kOk;
}

// Runs the handshake while it lasts, then reads application data until the
// input is used up.
TlsSession::Status Session::drive(std::string& plaintext) {
  SSL* ssl = ssl_.get();
  ERR_clear_error();
  if (!SSL_is_init_finished(ssl)) {
    int r = SSL_do_handshake(ssl);
    if (r != 1) {
      int e = SSL_get_error(ssl, r);
      if (e == SSL_ERROR_WANT_READ) return Status::kOk;
      return fail("TLS handshake failed", e);
    }
    // BoringSSL holds TLS 1.3 NewSessionTickets back until the first write (so
    // a small socket buffer cannot stall it); our write BIO is memory, so queue
    // them now: a client that never gets a response still gets its tickets.
    SSL_write(ssl, "", 0);
    ERR_clear_error();
  }
  // Records are opened into a scratch buffer and appended: growing
  // `plaintext` by a whole chunk first would zero 16 KiB for every read,
  // including the last one that finds nothing.
  thread_local std::unique_ptr<char[]> scratch(new char[kReadChunk]);
  for (;;) {
    int r = SSL_read(ssl, scratch.get(), int(kReadChunk));
    if (r > 0) {
      plaintext.append(scratch.get(), size_t(r));
      continue;
    }
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) return Status::kOk;
    if (e == SSL_ERROR_ZERO_RETURN) {
      state_ = State::kClosed;
      return Status::kClosed;
    }
    return fail("TLS read failed", e);
  }
}

TlsSession::Status Session::fail(const char* what, int sslError) {
  state_ = State::kFailed;
  std::string why = drainErrors();
  if (why.empty()) why = "SSL error " + std::to_string(sslError);
  error_ = std::string(what) + ": " + why;
  return Status::kError;
}

TlsSession::Status Session::writePlaintext(const char* data, size_t len) {
  if (state_ == State::kFailed) return Status::kError;
  if (!handshakeDone()) {
    error_ = "writePlaintext before the TLS handshake finished";
    return Status::kError;
  }
  ERR_clear_error();
  // Room for the records up front (payload and 22 bytes per 16 KiB record):
  // one allocation instead of a copy at every doubling.
  size_t need = wire_.size() + len + (len / 16384 + 1) * 32;
  if (wire_.capacity() < need) wire_.reserve(std::max(need, 2 * wire_.capacity()));
  while (len > 0) {
    int n = int(std::min<size_t>(len, INT_MAX / 2));
    int r = SSL_write(ssl_.get(), data, n);  // all of it: the write BIO grows
    if (r <= 0) return fail("TLS write failed", SSL_get_error(ssl_.get(), r));
    data += r;
    len -= size_t(r);
  }
  return Status::kOk;
}

void Session::takeOutput(std::string& out) {
  if (out.empty()) {
    out.swap(wire_);  // wire_ gets out's (empty) buffer for the next records
  } else {
    out.append(wire_);
  }
  wire_.clear();
}

void Session::shutdown() {
  if (shutdownSent_ || state_ == State::kFailed || !handshakeDone()) return;
  shutdownSent_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_.get());  // queues close_notify; we never wait for the peer's
  ERR_clear_error();
}

}  // namespace

std::shared_ptr<TlsContext> createTlsContext(const TlsConfig& config, std::string& err) {
  auto context = std::make_shared<Context>(config);
  if (!context->load(err)) return nullptr;
  err.clear();
  return context;
}

}  // namespace kuai::tls

// The entry point when this file is built as libkuai_tls.so and loaded with
// RTLD_DEEPBIND (see tls_loader.cc): plain C linkage so dlsym finds it by name.
extern "C" __attribute__((visibility("default"))) void* kuai_tls_create_context(
    const kuai::tls::TlsConfig* config, std::string* err) {
  std::shared_ptr<kuai::tls::TlsContext> ctx = kuai::tls::createTlsContext(*config, *err);
  if (!ctx) return nullptr;
  return new std::shared_ptr<kuai::tls::TlsContext>(std::move(ctx));
}
