'use strict';
// https.createServer with client certificates (requestCert, ca,
// rejectUnauthorized from $REJECT) and a key that may be encrypted
// ($PASSPHRASE) or come with its certificate in a PKCS#12 archive ($PFX). Each request is answered with what the socket tells of the
// TLS connection and the client's certificate. Prints "LISTENING <port>".
const fs = require('fs');
const https = require('https');

const port = Number(process.env.PORT);
const options = {
  key: fs.readFileSync(process.env.KEY),
  cert: fs.readFileSync(process.env.CERT),
  ca: fs.readFileSync(process.env.CA),
  requestCert: true,
  rejectUnauthorized: process.env.REJECT === '1',
};
if (process.env.PASSPHRASE) options.passphrase = process.env.PASSPHRASE;
if (process.env.PFX) {  // the key and certificate from a PKCS#12 archive instead
  delete options.key;
  delete options.cert;
  options.pfx = fs.readFileSync(process.env.PFX);
}

https.createServer(options, (req, res) => {
  const s = req.socket;
  const peer = s.getPeerCertificate();
  const x509 = s.getPeerX509Certificate();
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({
    authorized: s.authorized,
    authorizationError: s.authorizationError,
    subject: peer.subject,
    issuer: peer.issuer,
    fingerprint256: peer.fingerprint256,
    legacyFields: Object.keys(peer).sort(),
    x509Subject: x509 ? x509.subject : null,
    protocol: s.getProtocol(),
    alpn: s.alpnProtocol,
    servername: s.servername,
    cipherVersion: s.getCipher().version,
    encrypted: s.encrypted,
  }));
}).listen(port, '127.0.0.1', () => console.log(`LISTENING ${port}`));
