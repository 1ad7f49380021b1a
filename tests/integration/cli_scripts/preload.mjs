// --import: an ES module (top-level await allowed) before the script.
await new Promise((resolve) => setTimeout(resolve, 20));
globalThis.imported = true;
console.log('IMPORTED');
