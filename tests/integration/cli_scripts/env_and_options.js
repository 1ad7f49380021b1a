// What a script sees of node's options and of --env-file.
const v8 = require('v8');
console.log(JSON.stringify({
  version: process.version,
  v8: process.versions.v8,
  execArgv: process.execArgv,
  fromEnvFile: process.env.KUAI_FROM_ENV_FILE ?? null,
  heapLimitMiB: Math.round(v8.getHeapStatistics().heap_size_limit / 1048576),
  argv: process.argv.slice(2),
}));
