// --watch, in node's main environment (not a reactor's): watches the files
// thread 0's environment has loaded (their directories, so that editors that
// save by renaming are seen) or the --watch-path paths, and on a change asks
// for every environment to be replaced, one thread at a time, while the
// listening sockets stay open. Returns onFiles(list): the loaded files so far
// (null: stop watching).
// Called with (process, require, kuai) from scripting/addon.cc.
(function watch(process, require, kuai) {
  'use strict';
  const fs = require('fs');
  const path = require('path');

  const dirs = new Map();  // directory -> { watcher, files: Set of names, or null for all }
  const changed = new Set();
  let timer = null;

  function fire() {
    timer = null;
    const names = [...changed].map((f) => path.relative(process.cwd(), f) || f);
    changed.clear();
    process._rawDebug(`kuai: ${names.join(', ')} changed; replacing each thread's environment`);
    kuai.reload(`${names[0]} changed`);
  }

  function onEvent(dir, name) {
    const entry = dirs.get(dir);
    if (!entry) return;
    if (entry.files && (!name || !entry.files.has(name))) return;
    changed.add(name ? path.join(dir, name) : dir);
    if (timer) clearTimeout(timer);
    timer = setTimeout(fire, 50);  // an editor's save is often several events
    timer.unref();
  }

  function watchDir(dir, recursive) {
    let entry = dirs.get(dir);
    if (entry) return entry;
    try {
      const watcher = fs.watch(dir, { recursive, persistent: false }, (event, name) => onEvent(dir, name));
      watcher.on('error', () => {});
      entry = { watcher, files: recursive ? null : new Set() };
    } catch (err) {
      process._rawDebug(`kuai: --watch: cannot watch ${dir}: ${err.message}`);
      entry = { watcher: null, files: new Set() };
    }
    dirs.set(dir, entry);
    return entry;
  }

  for (const p of kuai.paths) {
    const full = path.resolve(p);
    let isDir = false;
    try {
      isDir = fs.statSync(full).isDirectory();
    } catch (err) {
      process._rawDebug(`kuai: --watch-path ${p}: ${err.code === 'ENOENT' ? 'no such file or directory' : err.message}`);
      continue;
    }
    if (isDir) {
      watchDir(full, true);
    } else {
      const entry = watchDir(path.dirname(full), false);
      if (entry.files) entry.files.add(path.basename(full));
    }
  }

  return function onFiles(files) {
    if (files === null) {
      for (const { watcher } of dirs.values()) if (watcher) watcher.close();
      dirs.clear();
      if (timer) clearTimeout(timer);
      return;
    }
    if (kuai.paths.length) return;  // --watch-path: those alone
    for (const f of files) {
      const entry = watchDir(path.dirname(f), false);
      if (entry.files) entry.files.add(path.basename(f));
    }
  };
});
