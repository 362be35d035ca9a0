// Runs with `node --test` (part of `npm test`): src/extension.js against stand-ins for the
// `vscode` API and vscode-languageclient, which only exist inside the editor. Checks what the
// extension asks of them: the command it starts, its arguments, and the message when it is missing.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const Module = require('module');

function harness(settings) {
  const calls = { errors: [], clients: [], started: 0 };
  const vscode = {
    workspace: {
      workspaceFolders: undefined,
      getConfiguration: (section) => {
        assert.strictEqual(section, 'archspec');
        return { get: (key, fallback) => (key in settings ? settings[key] : fallback) };
      },
      onDidChangeConfiguration: () => ({ dispose() {} }),
      createFileSystemWatcher: (glob) => ({ glob, dispose() {} }),
    },
    window: {
      createOutputChannel: () => ({ appendLine() {}, dispose() {} }),
      showErrorMessage: async (message, ...items) => { calls.errors.push({ message, items }); return undefined; },
    },
    commands: { registerCommand: () => ({ dispose() {} }), executeCommand: async () => {} },
  };
  class LanguageClient {
    constructor(id, name, serverOptions, clientOptions) {
      calls.clients.push({ id, name, serverOptions, clientOptions });
    }
    async start() { calls.started += 1; }
    async stop() {}
  }
  const languageclient = { LanguageClient, TransportKind: { stdio: 0, ipc: 1, pipe: 2, socket: 3 } };
  const load = Module._load;
  Module._load = function (request, parent, isMain) {
    if (request === 'vscode') return vscode;
    if (request === 'vscode-languageclient/node') return languageclient;
    return load.call(this, request, parent, isMain);
  };
  const file = require.resolve('../src/extension.js');
  delete require.cache[file];
  let extension;
  try {
    extension = require(file);
  } finally {
    Module._load = load;
  }
  return { extension, calls, context: { subscriptions: [] } };
}

test('a missing server command shows the not-found message and starts no client', async () => {
  const { extension, calls, context } = harness({ 'server.path': 'archspec-not-installed-anywhere' });
  await extension.activate(context);
  assert.strictEqual(calls.clients.length, 0);
  assert.strictEqual(calls.errors.length, 1);
  assert.match(calls.errors[0].message, /`archspec-not-installed-anywhere` was not found/);
  assert.deepStrictEqual(calls.errors[0].items, ['Open Settings']);
});

test('the configured command starts `archspec lsp` over stdio for .arch documents', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archspec-ext-'));
  const exe = path.join(dir, 'archspec');
  fs.writeFileSync(exe, '#!/bin/sh\n');
  fs.chmodSync(exe, 0o755);
  const { extension, calls, context } = harness({ 'server.path': exe });
  await extension.activate(context);
  assert.deepStrictEqual(calls.errors, []);
  assert.strictEqual(calls.clients.length, 1);
  assert.strictEqual(calls.started, 1);
  const { serverOptions, clientOptions } = calls.clients[0];
  assert.strictEqual(serverOptions.command, exe);
  assert.deepStrictEqual(serverOptions.args, ['lsp']);
  assert.strictEqual(serverOptions.transport, 0);
  assert.ok(clientOptions.documentSelector.every((s) => s.language === 'arch'));
  assert.strictEqual(clientOptions.synchronize.fileEvents.glob, '**/*.arch');
  await extension.deactivate();
});

test('server.args replaces the default arguments', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archspec-ext-'));
  const exe = path.join(dir, 'archspec');
  fs.writeFileSync(exe, '#!/bin/sh\n');
  fs.chmodSync(exe, 0o755);
  const { extension, calls, context } = harness({ 'server.path': exe, 'server.args': ['lsp', '--log', 'debug'] });
  await extension.activate(context);
  assert.deepStrictEqual(calls.clients[0].serverOptions.args, ['lsp', '--log', 'debug']);
  await extension.deactivate();
});
