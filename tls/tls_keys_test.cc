// Keys and client certificates: a passphrase-protected key, a PKCS#12
// archive, client certificates requested and required (mutual TLS).
#include "tls/tls.h"

#include "tls/tls_test_support.h"

namespace kuai::tls {
namespace {

using namespace testing_support;

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

}  // namespace
}  // namespace kuai::tls
