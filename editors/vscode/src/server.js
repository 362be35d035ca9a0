// Finding the archspec command before starting the language server, so that a missing
// command gives a clear message instead of the client's generic "couldn't start" error.
// Plain Node (no vscode import), so test/server.test.js can run it outside the editor.
'use strict';

const fs = require('fs');
const path = require('path');

function isExecutableFile(file, platform) {
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) {
      return false;
    }
    if (platform === 'win32') {
      return true;
    }
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The full path the command resolves to, or null when it cannot be found.
 * A command with a directory part (`./venv/bin/archspec`, `C:\...\archspec.exe`) is taken as a path
 * (relative ones against `cwd`); a bare name is looked up on PATH, with PATHEXT's extensions on Windows.
 */
function findExecutable(command, { env = process.env, platform = process.platform, cwd = process.cwd() } = {}) {
  if (!command) {
    return null;
  }
  const exts = platform === 'win32'
    ? [''].concat((env.PATHEXT || '.COM;.EXE;.BAT;.CMD').split(';').filter(Boolean))
    : [''];
  const hasDir = command.includes('/') || (platform === 'win32' && command.includes('\\'));
  if (hasDir) {
    const full = path.resolve(cwd, command);
    for (const ext of exts) {
      if (isExecutableFile(full + ext, platform)) {
        return full + ext;
      }
    }
    return null;
  }
  const pathVar = env.PATH || env.Path || '';
  const sep = platform === 'win32' ? ';' : path.delimiter;
  for (const dir of pathVar.split(sep).filter(Boolean)) {
    for (const ext of exts) {
      const candidate = path.join(dir, command + ext);
      if (isExecutableFile(candidate, platform)) {
        return candidate;
      }
    }
  }
  return null;
}

/** The message shown when the server command cannot be found. */
function notFoundMessage(command) {
  return `archspec: the language server command \`${command}\` was not found. ` +
    "Install archspec (`pip install archspec`, or `pip install -e .` in a checkout) in an environment " +
    'on your PATH, or set "archspec.server.path" to the full path of the archspec executable ' +
    '(e.g. .venv/bin/archspec). Syntax highlighting works without it.';
}

module.exports = { findExecutable, notFoundMessage };
