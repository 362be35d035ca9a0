// archspec for VS Code: the grammar and language configuration are declarative (package.json);
// this file starts the language server `archspec lsp` over stdio with vscode-languageclient.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');
const { findExecutable, notFoundMessage } = require('./server');
const { createShowNetwork } = require('./view');

let client = null;
let output = null;

function serverSettings() {
  const config = vscode.workspace.getConfiguration('archspec');
  const command = config.get('server.path', 'archspec');
  const args = config.get('server.args', ['lsp']);
  return { command, args };
}

function workspaceDir() {
  const folders = vscode.workspace.workspaceFolders;
  return folders && folders.length > 0 ? folders[0].uri.fsPath : undefined;
}

async function startClient() {
  const { command, args } = serverSettings();
  const cwd = workspaceDir();
  const resolved = findExecutable(command, { cwd: cwd || process.cwd() });
  if (!resolved) {
    const choice = await vscode.window.showErrorMessage(notFoundMessage(command), 'Open Settings');
    if (choice === 'Open Settings') {
      vscode.commands.executeCommand('workbench.action.openSettings', 'archspec.server');
    }
    return;
  }
  const serverOptions = {
    command: resolved,
    args,
    transport: TransportKind.stdio,
    options: cwd ? { cwd } : undefined,
  };
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'arch' },
      { scheme: 'untitled', language: 'arch' },
    ],
    // `use "file.arch"` makes one file depend on another: tell the server when any changes.
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher('**/*.arch') },
    outputChannel: output,
  };
  client = new LanguageClient('archspec', 'archspec language server', serverOptions, clientOptions);
  try {
    await client.start();
  } catch (err) {
    const message = err && err.message ? err.message : String(err);
    output.appendLine(`failed to start \`${resolved} ${args.join(' ')}\`: ${message}`);
    vscode.window.showErrorMessage(
      `archspec: \`${command} ${args.join(' ')}\` did not start as a language server (${message}). ` +
      'Does your archspec have the `lsp` command? See the "archspec" output for details.');
    client = null;
  }
}

async function stopClient() {
  if (client) {
    const running = client;
    client = null;
    await running.stop();
  }
}

async function activate(context) {
  output = vscode.window.createOutputChannel('archspec');
  context.subscriptions.push(output);
  context.subscriptions.push(vscode.commands.registerCommand('archspec.restartServer', async () => {
    await stopClient();
    await startClient();
  }));
  context.subscriptions.push(vscode.commands.registerCommand('archspec.showNetwork', createShowNetwork(vscode, () => client)));
  context.subscriptions.push(vscode.workspace.onDidChangeConfiguration(async (event) => {
    if (event.affectsConfiguration('archspec.server')) {
      await stopClient();
      await startClient();
    }
  }));
  await startClient();
}

function deactivate() {
  return stopClient();
}

module.exports = { activate, deactivate };
