// kuai's site, read by the kuai service (`systemctl reload kuai` applies
// changes; `kuai --check-config /etc/kuai/kuai.config.js` checks them first).
// The shape of a config, with HTTPS, redirects, a proxied API and per-route
// headers, is in /usr/share/doc/kuai/README.md.
module.exports = {
  listen: [{ host: '0.0.0.0', port: 80 }],
  routes: [
    { match: '/', static: { root: '/usr/share/kuai/html' } },
  ],
};
