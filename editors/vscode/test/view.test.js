// Runs with `node --test` (part of `npm test`): src/view.js against stand-ins for the `vscode` API
// and the language client. The real `archspec/view` request and page are tested from Python
// (tests/test_view.py drives the server and the page in chromium); here: what the command asks for,
// what it puts in the webview, and that edits reach the page as new data.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { createShowNetwork, REQUEST, DEBOUNCE_MS } = require('../src/view');

function harness({ languageId = 'arch', client = true } = {}) {
  const calls = { requests: [], posted: [], errors: [], panels: [], disposed: 0 };
  const listeners = { change: [], message: [], dispose: [] };
  const uri = 'file:///work/net.arch';
  const vscode = {
    ViewColumn: { One: 1, Beside: -2 },
    window: {
      activeTextEditor: { document: { languageId, fileName: '/work/net.arch', uri: { toString: () => uri } } },
      showErrorMessage: (message) => { calls.errors.push(message); },
      createWebviewPanel: (id, title, column, options) => {
        const panel = {
          id, title, column, options,
          webview: {
            html: '',
            postMessage: (m) => { calls.posted.push(m); return Promise.resolve(true); },
            onDidReceiveMessage: (f) => { listeners.message.push(f); return { dispose() { calls.disposed += 1; } }; },
          },
          onDidDispose: (f) => listeners.dispose.push(f),
        };
        calls.panels.push(panel);
        return panel;
      },
    },
    workspace: {
      onDidChangeTextDocument: (f) => { listeners.change.push(f); return { dispose() { calls.disposed += 1; } }; },
    },
  };
  let version = 0;
  const fake = {
    sendRequest: async (method, params) => {
      calls.requests.push({ method, params });
      version += 1;
      return { data: { version }, ...(params.page ? { page: '<!DOCTYPE html><p>view</p>' } : {}) };
    },
  };
  const show = createShowNetwork(vscode, () => (client ? fake : null));
  return { show, calls, listeners, uri };
}

test('the command opens the page from the server and sends it the data once it is ready', async () => {
  const { show, calls, listeners, uri } = harness();
  const panel = await show();
  assert.deepStrictEqual(calls.requests, [{ method: REQUEST, params: { textDocument: { uri }, page: true } }]);
  assert.strictEqual(panel.webview.html, '<!DOCTYPE html><p>view</p>');
  assert.strictEqual(panel.title, 'Network: net.arch');
  assert.strictEqual(panel.options.enableScripts, true);
  assert.deepStrictEqual(panel.options.localResourceRoots, []); // the page loads nothing from disk
  await listeners.message[0]({ type: 'ready' });
  assert.deepStrictEqual(calls.posted, [{ type: 'data', data: { version: 1 } }]);
});

test('a burst of edits to the file becomes one request, and its data goes to the page', async () => {
  const { show, calls, listeners, uri } = harness();
  await show();
  const doc = { uri: { toString: () => uri } };
  const other = { uri: { toString: () => 'file:///work/other.arch' } };
  listeners.change[0]({ document: doc });
  listeners.change[0]({ document: other }); // another file: not this view's
  listeners.change[0]({ document: doc });
  await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS + 100));
  assert.deepStrictEqual(calls.requests.slice(1), [{ method: REQUEST, params: { textDocument: { uri } } }]);
  assert.deepStrictEqual(calls.posted, [{ type: 'data', data: { version: 2 } }]);
  listeners.dispose[0]();
  assert.strictEqual(calls.disposed, 2); // closing the panel stops following the file
});

test('without an .arch editor or a running server the command says why and opens nothing', async () => {
  const notArch = harness({ languageId: 'python' });
  assert.strictEqual(await notArch.show(), null);
  assert.match(notArch.calls.errors[0], /open an \.arch file/);
  const noServer = harness({ client: false });
  assert.strictEqual(await noServer.show(), null);
  assert.match(noServer.calls.errors[0], /language server is not running/);
  assert.strictEqual(notArch.calls.panels.length + noServer.calls.panels.length, 0);
});
