// "archspec: Show network": the interactive view of the active .arch file in a webview, kept up to
// date as the file is edited. The language server answers the custom request `archspec/view`: the
// first answer carries the page itself (the same page `archspec view` writes), later ones only the data.
'use strict';

const REQUEST = 'archspec/view';
const DEBOUNCE_MS = 300;

function createShowNetwork(vscode, getClient) {
  return async function showNetwork() {
    const editor = vscode.window.activeTextEditor;
    const client = getClient();
    if (!editor || editor.document.languageId !== 'arch') {
      vscode.window.showErrorMessage('archspec: open an .arch file to show its network.');
      return null;
    }
    if (!client) {
      vscode.window.showErrorMessage('archspec: the language server is not running (see the "archspec" output).');
      return null;
    }
    const document = editor.document;
    const uri = document.uri.toString();
    const first = await client.sendRequest(REQUEST, { textDocument: { uri }, page: true });
    const panel = vscode.window.createWebviewPanel('archspecNetwork', `Network: ${document.fileName.split(/[\\/]/).pop()}`,
      vscode.ViewColumn.Beside, { enableScripts: true, retainContextWhenHidden: true, localResourceRoots: [] });
    panel.webview.html = first.page;
    let timer = null;
    const send = async () => {
      timer = null;
      const answer = await client.sendRequest(REQUEST, { textDocument: { uri } });
      panel.webview.postMessage({ type: 'data', data: answer.data });
    };
    const subscriptions = [
      panel.webview.onDidReceiveMessage(async (message) => {
        if (message.type === 'ready') panel.webview.postMessage({ type: 'data', data: first.data });
        if (message.type === 'reveal') {
          const target = await vscode.workspace.openTextDocument(vscode.Uri.file(message.file));
          const position = new vscode.Position(message.line - 1, 0);
          await vscode.window.showTextDocument(target, { viewColumn: vscode.ViewColumn.One, selection: new vscode.Range(position, position) });
        }
      }),
      vscode.workspace.onDidChangeTextDocument((event) => {
        if (event.document.uri.toString() !== uri) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(send, DEBOUNCE_MS);
      }),
    ];
    panel.onDidDispose(() => {
      if (timer) clearTimeout(timer);
      subscriptions.forEach((s) => s.dispose());
    });
    return panel;
  };
}

module.exports = { createShowNetwork, REQUEST, DEBOUNCE_MS };
