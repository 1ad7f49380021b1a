// Prints what the preloads left, then exits.
console.log(`MAIN preloaded=${globalThis.preloaded} imported=${globalThis.imported === true}`);
