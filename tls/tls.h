// kuai's TLS layer over BoringSSL: certificates chosen by SNI, ALPN, session
// resumption (tickets with rotated keys, and a session cache), OCSP stapling,
// reload. It knows nothing of sockets or the server: a TlsSession turns
// ciphertext from the network into plaintext and back through memory buffers, so
// the reactor that owns the connection drives it without ever blocking.
//
// The interface is abstract and free of BoringSSL types on purpose: once libnode
// (which carries OpenSSL 3) shares the process, the implementation is loaded as
// its own shared object (RTLD_LOCAL | RTLD_DEEPBIND) through createTlsContext.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kuai::tls {

struct CertificateConfig {
  std::string certFile;  // PEM chain, leaf first
  std::string keyFile;   // PEM private key (ECDSA or RSA)
  std::string ocspFile;  // optional DER OCSP response to staple
  // In-memory PEM (https.createServer({cert, key})): used instead of the files
  // when set; certFile/keyFile then only name them in messages.
  std::string certPem;
  std::string keyPem;
  // The key's passphrase, when the PEM key is encrypted (or the PKCS#12's).
  std::string keyPassphrase;
  // A PKCS#12 archive (DER: key, certificate and chain), used instead of
  // the PEMs when set (https.createServer({ pfx })).
  std::string pfx;
};

// Client certificates (mutual TLS).
enum class ClientCerts {
  kNone,     // not asked for
  kRequest,  // asked for; the handshake goes on without one or with one
             // that does not verify (TlsSession::peerVerifyError says why)
  kRequire,  // asked for; no certificate, or one that does not verify
             // against clientCaPem, fails the handshake
};

struct TlsConfig {
  // The first certificate is the default; others are picked when the SNI name
  // matches one of their DNS names (subjectAltName, wildcards "*.x" allowed).
  std::vector<CertificateConfig> certificates;
  std::vector<std::string> alpn = {"http/1.1"};  // server preference order
  uint16_t minVersion = 0x0303;                   // TLS 1.2
  size_t sessionCacheSize = 20480;                // stateful resumption entries; 0: no cache
  uint32_t ticketKeyRotateSeconds = 3600;         // ticket key lifetime; 0: no tickets
  ClientCerts clientCerts = ClientCerts::kNone;
  // PEM certificates client certificates are verified against (and whose
  // names the server's CertificateRequest lists); empty: the system's.
  std::string clientCaPem;
};

// One TLS session, owned by one connection on one reactor thread.
class TlsSession {
 public:
  enum class Status {
    kOk,         // progress made (or nothing to do); see wantsWrite()/plaintext out
    kClosed,     // the peer sent close_notify
    kError,      // fatal: close the connection (error() says why)
    kPlainHttp,  // the first bytes are a plain-text HTTP request, not TLS
  };

  virtual ~TlsSession() = default;

  // Ciphertext arrived. Decrypted application data is appended to `plaintext`.
  // Handshake records produced in reply become available through takeOutput().
  virtual Status onCiphertext(const char* data, size_t len, std::string& plaintext) = 0;
  // Encrypts application data; the records become available through takeOutput().
  // Only valid once handshakeDone().
  virtual Status writePlaintext(const char* data, size_t len) = 0;
  // Moves pending ciphertext (handshake or application records) into `out`.
  virtual void takeOutput(std::string& out) = 0;
  virtual bool hasOutput() const = 0;
  // Queues a close_notify alert (sent through takeOutput()).
  virtual void shutdown() = 0;

  virtual bool handshakeDone() const = 0;
  virtual std::string_view alpnSelected() const = 0;  // empty when none
  virtual std::string_view serverName() const = 0;    // SNI, empty when none
  virtual std::string_view version() const = 0;       // "TLSv1.3", ...
  virtual bool resumed() const = 0;
  virtual const std::string& error() const = 0;
  // The cipher suite: OpenSSL's name ("TLS_AES_128_GCM_SHA256",
  // "ECDHE-RSA-AES128-GCM-SHA256") and the IANA one. Empty before the
  // handshake.
  virtual std::string_view cipherName() const { return {}; }
  virtual std::string_view cipherStandardName() const { return {}; }
  // The client's certificate (DER), empty when it sent none.
  virtual std::string peerCertificate() const { return {}; }
  // Why the client's certificate did not verify, as Node names it
  // ("DEPTH_ZERO_SELF_SIGNED_CERT", "UNABLE_TO_GET_ISSUER_CERT" when there is
  // none, ...); empty when it verified.
  virtual std::string_view peerVerifyError() const { return {}; }
};

// A loaded set of certificates and settings. Thread-safe: every reactor creates
// sessions from the same context; a reload builds a new context and new
// connections use it while open ones keep theirs.
class TlsContext {
 public:
  virtual ~TlsContext() = default;
  virtual std::unique_ptr<TlsSession> newSession() = 0;
  // Starts a new session-ticket key now, as the periodic rotation does (the
  // previous key still opens tickets for one more period). For tests and for
  // operators who want to rotate on demand; thread-safe.
  virtual void rotateTicketKeys() {}
};

// Loads certificates and keys. On failure returns null and fills `err` with one
// line naming the file and what is wrong with it.
std::shared_ptr<TlsContext> createTlsContext(const TlsConfig& config, std::string& err);

}  // namespace kuai::tls
