// -r: runs in every environment before the script.
globalThis.preloaded = (globalThis.preloaded || 0) + 1;
console.log(`PRELOAD ${require('worker_threads').threadId}`);
