// Drives a server TlsSession against a BoringSSL client SSL in memory: every
// byte one side writes is handed to the other by pump(), no sockets involved.
// Certificates come from tools/gen-test-certs, run once into a temp folder.
#include "tls/tls.h"

#include <atomic>
#include <thread>

#include "tls/tls_test_support.h"

namespace kuai::tls {
namespace {

using namespace testing_support;

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
