'use strict';
// Express 5 with the middleware most apps load: morgan (access log),
// helmet (security fields), cors, compression, express-session, multer
// (multipart uploads) and express.static. Several of them hook res.writeHead
// (on-headers) and read res._header, as they do under Node. Listens on $PORT
// at 127.0.0.1; prints "LISTENING <port>" once listening.

const path = require('path');
const express = require('express');
const compression = require('compression');
const morgan = require('morgan');
const helmet = require('helmet');
const cors = require('cors');
const multer = require('multer');
const session = require('express-session');

const app = express();
const log = [];
app.use(morgan(':method :url :status :res[content-length]', {
  stream: { write: (line) => log.push(line.trim()) },
}));
app.use(helmet());
app.use(cors({ origin: 'https://example.com', credentials: true }));
app.use(compression({ threshold: 100 }));
app.use(session({ secret: 'test only', resave: false, saveUninitialized: true }));
app.use(express.urlencoded({ extended: false }));
app.use('/static', express.static(path.join(__dirname, 'public')));

const upload = multer({ storage: multer.memoryStorage() });
app.post('/upload', upload.single('file'), (req, res) => {
  res.json({ name: req.file.originalname, size: req.file.size, note: req.body.note });
});
app.post('/form', (req, res) => res.json(req.body));
app.get('/session', (req, res) => {
  req.session.views = (req.session.views || 0) + 1;
  res.json({ views: req.session.views });
});
app.get('/big', (req, res) => res.send('y'.repeat(10000)));
app.get('/stream', (req, res) => {
  res.type('text');
  let i = 0;
  const t = setInterval(() => {
    res.write(`chunk ${i}\n`);
    if (++i === 5) {
      clearInterval(t);
      res.end();
    }
  }, 5);
});
app.get('/log', (req, res) => res.json(log.slice(-3)));

const port = Number(process.env.PORT);
app.listen(port, '127.0.0.1', () => console.log(`LISTENING ${port}`));
