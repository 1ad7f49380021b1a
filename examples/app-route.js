// The app route of examples/kuai.config.js: exports what answers the route.
const { App, Router } = require('kuai');

const app = new App();
const router = new Router();
router.get('/', (ctx) => { ctx.body = 'hello from the app route\n'; });
router.get('/users/:id', (ctx) => { ctx.body = { id: ctx.params.id }; });
app.use(router.routes()).use(router.allowedMethods());

module.exports = app;
