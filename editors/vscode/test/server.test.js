// Runs with `node --test` (part of `npm test`): the server command lookup behind the
// "command not found" message of src/extension.js.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { findExecutable, notFoundMessage } = require('../src/server');

function tempBin() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archspec-bin-'));
  const exe = path.join(dir, 'archspec');
  fs.writeFileSync(exe, '#!/bin/sh\necho lsp\n');
  fs.chmodSync(exe, 0o755);
  return { dir, exe };
}

test('a bare name is found on PATH', () => {
  const { dir, exe } = tempBin();
  const env = { PATH: ['/nonexistent-dir', dir].join(path.delimiter) };
  assert.strictEqual(findExecutable('archspec', { env, platform: 'linux' }), exe);
});

test('a bare name missing from PATH gives null', () => {
  const { dir } = tempBin();
  assert.strictEqual(findExecutable('archspec-not-installed', { env: { PATH: dir }, platform: 'linux' }), null);
  assert.strictEqual(findExecutable('archspec', { env: { PATH: '' }, platform: 'linux' }), null);
});

test('a file without the executable bit is not a command', () => {
  const { dir, exe } = tempBin();
  fs.chmodSync(exe, 0o644);
  assert.strictEqual(findExecutable('archspec', { env: { PATH: dir }, platform: 'linux' }), null);
});

test('a path with a directory is used as is, relative to the workspace', () => {
  const { dir, exe } = tempBin();
  assert.strictEqual(findExecutable(exe, { env: { PATH: '' }, platform: 'linux' }), exe);
  assert.strictEqual(findExecutable('./archspec', { env: { PATH: '' }, platform: 'linux', cwd: dir }), exe);
  assert.strictEqual(findExecutable(path.join(dir, 'missing', 'archspec'), { env: { PATH: dir }, platform: 'linux' }), null);
});

test('on Windows, PATHEXT extensions are tried', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archspec-win-'));
  const exe = path.join(dir, 'archspec.EXE');
  fs.writeFileSync(exe, '');
  const env = { PATH: dir, PATHEXT: '.COM;.EXE' };
  assert.strictEqual(findExecutable('archspec', { env, platform: 'win32' }), exe);
});

test('the not-found message names the command and the setting to change', () => {
  const message = notFoundMessage('/opt/venv/bin/archspec');
  assert.match(message, /`\/opt\/venv\/bin\/archspec` was not found/);
  assert.match(message, /"archspec\.server\.path"/);
  assert.match(message, /pip install archspec/);
});
