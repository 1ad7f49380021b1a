// `app` with kuai's built-in App and Router (require('kuai')); kuai only.
'use strict';
const { App, Router } = require('kuai');
require('./app-def')(App, Router)
  .listen(Number(process.env.PORT), process.env.HOST || '127.0.0.1');
