// kuai --config examples/kuai.config.js
// Static files under /static/, an API behind a reverse proxy, the rest answered
// by a script (examples/app-route.js) in every reactor's Node environment.
module.exports = {
  listen: [{ port: 8080 }],
  routes: [
    { match: '/static/', static: { root: './public' } },
    { match: '/api/', proxy: { upstreams: ['127.0.0.1:9001', '127.0.0.1:9002'],
                               balance: 'least_conn', healthCheck: { path: '/health' } } },
    { match: '/', app: './app-route.js' },
  ],
  limits: { bodyBytes: '8m', idleTimeout: '60s' },
  logging: { access: '-', metrics: '/metrics' },
};
