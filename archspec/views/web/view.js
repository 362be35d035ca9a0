// archspec view: draws the checked tree that archspec puts in #archspec-data (or sends in a
// {type: "data"} message, in VS Code) as a graph laid out by dagre. Block calls, residuals and
// branches start collapsed to one node with their totals; a click expands one into its own
// nodes (a header node opens it, a join closes residuals and branches) and a click on the header
// collapses it again. Branches keep their source order: dagre's crossing heuristic is turned off
// and the nodes go in in execution order, which draws these series-parallel graphs untangled.
(function () {
  'use strict';

  const SVG = 'http://www.w3.org/2000/svg';
  const fmt = (n) => Number(n).toLocaleString('en-US');
  const vscode = typeof acquireVsCodeApi === 'function' ? acquireVsCodeApi() : null;

  const state = { data: null, byId: new Map(), parent: new Map(), expanded: new Set(), selected: null,
                  hits: [], hitIndex: -1, query: '', view: { x: 0, y: 0, k: 1 }, layout: null, painted: false };

  // ------------------------------------------------------------------ the tree

  function children(node) {
    const out = [...(node.body || []), ...(node.shortcut || [])];
    for (const branch of node.branches || []) out.push(...branch);
    if (node.join) out.push(node.join);
    return out;
  }

  const isGroup = (node) => node.kind === 'call' || node.kind === 'residual' || node.kind === 'branch';

  function index(data) {
    state.byId.clear();
    state.parent.clear();
    const stack = data.body.map((n) => [n, null]);
    while (stack.length) {
      const [node, parent] = stack.pop();
      state.byId.set(node.id, node);
      state.parent.set(node.id, parent);
      for (const kid of children(node)) stack.push([kid, node]);
    }
    // diagnostics: on their node, and counted on every structure around it (seen when collapsed)
    for (const node of state.byId.values()) { node.diags = []; node.inner = { error: 0, warning: 0 }; }
    data.diagnostics.forEach((d, i) => {
      d.index = i;
      if (!d.node || !state.byId.has(d.node)) return;
      state.byId.get(d.node).diags.push(d);
      for (let p = state.byId.get(d.node); p; p = state.parent.get(p.id)) p.inner[d.severity] = (p.inner[d.severity] || 0) + 1;
    });
  }

  function layerCount(node) {
    if (!isGroup(node)) return node.kind === 'layer' ? 1 : 0;
    if (node.layers === undefined) node.layers = children(node).reduce((s, k) => s + layerCount(k), 0);
    return node.layers;
  }

  function sourceLine(node) {
    const text = state.data.sources[node.file];
    if (!text || !node.line) return '';
    return text.split('\n')[node.line - 1] || '';
  }

  // ------------------------------------------------------------------ the graph

  let measurer = null;
  function textWidth(text, bold) {
    if (!measurer) measurer = document.createElement('canvas').getContext('2d');
    measurer.font = `${bold ? '600 ' : ''}12px system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif`;
    return measurer.measureText(text).width;
  }

  function nodeClass(node) {
    if (node.kind === 'join') return 'join';
    if (isGroup(node)) return 'group';
    if (node.op === 'input') return 'input';
    if (node.params > 0) return 'learnable';
    return /relu|gelu|silu|sigmoid|tanh|softmax|hardswish|leaky|elu|mish|swish/.test(node.op) ? 'activation' : 'other';
  }

  function totals(node) {
    const parts = [];
    if (isGroup(node)) parts.push(`${fmt(layerCount(node))} layers`);
    if (node.params) parts.push(`${fmt(node.params)} params`);
    if (isGroup(node) && node.macs) parts.push(`${(node.macs / 1e6).toFixed(1)}M MACs`);
    return parts.join(' · ');
  }

  // Builds the dagre graph for what is expanded now; returns it with the boxes to draw behind groups.
  function buildGraph() {
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: 'TB', nodesep: 24, ranksep: 18, edgesep: 10, marginx: 20, marginy: 20 });
    const boxes = [];
    let edgeCount = 0;

    function addNode(id, node, role, lines) {
      const width = Math.max(...lines.map((l, i) => textWidth(l, i === 0))) + 24 + (node.diags.length || hasInner(node, role) ? 22 : 0);
      g.setNode(id, { node, role, lines, width: Math.max(width, 56), height: lines.length > 1 ? 38 : 24 });
      return id;
    }
    function edge(tail, head, skip) {
      if (!tail) return;
      const label = tail.shape || '';
      g.setEdge(tail.id, head, { label, skip: !!skip, width: label ? textWidth(label) * 0.9 + 6 : 0,
                                 height: label ? 14 : 0, labelpos: 'c' }, `e${edgeCount++}`);
    }
    function seq(nodes, tail, members, skip) {
      for (const node of nodes) tail = visit(node, tail, members, skip);
      return tail;
    }
    function visit(node, tail, members, skip) {
      const title = `${node.name}  ${node.label}`;
      if (!isGroup(node) || !state.expanded.has(node.path)) {
        const lines = isGroup(node) ? [`▸ ${title}`, totals(node)] : node.kind === 'join' ? [node.label] : [title, totals(node)];
        const id = addNode(node.id, node, isGroup(node) ? 'collapsed' : skip ? 'shortcut' : 'plain', lines.filter(Boolean));
        edge(tail, id, skip);
        members.push(id);
        return { id, shape: node.out };
      }
      const own = [];
      const head = addNode(`${node.id}:h`, node, 'header', [`▾ ${title}`, totals(node)].filter(Boolean));
      edge(tail, head, skip);
      own.push(head);
      const start = { id: head, shape: node.in };
      let end;
      if (node.kind === 'call') {
        end = seq(node.body, start, own, skip);
      } else if (node.kind === 'residual') {
        end = joined(node, [[node.body, skip], [node.shortcut || [], true]], start, own);
      } else {
        end = joined(node, node.branches.map((b) => [b, skip]), start, own);
      }
      members.push(...own);
      boxes.push({ node, members: own });
      return end;
    }
    // Each path's edge into the join goes in right after the path, so that an empty path (the
    // identity) keeps its place among the others: dagre's start order follows edge order.
    function joined(node, paths, start, own) {
      const id = node.join ? addNode(node.join.id, node.join, 'join', [node.join.label]) : null;
      let last = start;
      for (const [nodes, skip] of paths) {
        last = seq(nodes, start, own, skip);
        if (id) edge(last, id, skip);
      }
      if (!id) return last;
      own.push(id);
      return { id, shape: node.join.out };
    }
    seq(state.data.body, null, [], false);
    return { g, boxes };
  }

  function hasInner(node, role) {
    return role === 'collapsed' && (node.inner.error || node.inner.warning);
  }

  function layout() {
    const { g, boxes } = buildGraph();
    // No crossing minimisation: the execution-order start is untangled and keeps branch order.
    dagre.layout(g, { disableOptimalOrderHeuristic: true });
    for (const box of boxes) {
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const id of box.members) {
        const n = g.node(id);
        x0 = Math.min(x0, n.x - n.width / 2); x1 = Math.max(x1, n.x + n.width / 2);
        y0 = Math.min(y0, n.y - n.height / 2); y1 = Math.max(y1, n.y + n.height / 2);
      }
      box.rect = { x0, y0, x1, y1 };
    }
    // outer boxes first (drawn behind), each a little larger than the ones inside it
    boxes.sort((a, b) => (b.rect.x1 - b.rect.x0) * (b.rect.y1 - b.rect.y0) - (a.rect.x1 - a.rect.x0) * (a.rect.y1 - a.rect.y0));
    boxes.forEach((box) => { box.pad = 6 + 4 * box.node.path.split('.').length; });
    return { g, boxes };
  }

  // ------------------------------------------------------------------ drawing

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function draw() {
    state.layout = layout();
    const { g, boxes } = state.layout;
    const root = document.getElementById('viewport');
    root.textContent = '';
    const boxLayer = el('g', {}, root), edgeLayer = el('g', {}, root), nodeLayer = el('g', {}, root);
    for (const box of boxes) {
      const { x0, y0, x1, y1 } = box.rect;
      const pad = Math.max(4, 14 - 2 * box.node.path.split('.').length);
      el('rect', { class: `box ${box.node.kind}`, x: x0 - pad, y: y0 - pad, width: x1 - x0 + 2 * pad, height: y1 - y0 + 2 * pad, rx: 8,
                   'data-path': box.node.path }, boxLayer);
    }
    for (const e of g.edges()) {
      const info = g.edge(e);
      const group = el('g', { class: `edge${info.skip ? ' skip' : ''}` }, edgeLayer);
      const pts = info.points;
      el('path', { d: 'M' + pts.map((p) => `${p.x},${p.y}`).join('L'), 'marker-end': 'url(#arrow)' }, group);
      if (info.label) {
        el('rect', { x: info.x - info.width / 2, y: info.y - 7, width: info.width, height: 14, rx: 3 }, group);
        const t = el('text', { x: info.x, y: info.y + 3.5, 'text-anchor': 'middle' }, group);
        t.textContent = info.label;
      }
    }
    for (const id of g.nodes()) drawNode(id, g.node(id), nodeLayer);
    markHits();
    markSelected();
  }

  function drawNode(id, info, parent) {
    const { node, role, lines } = info;
    const classes = ['node', role === 'header' ? 'header' : nodeClass(node)];
    if (role === 'shortcut') classes.push('shortcut');
    const severity = node.diags.some((d) => d.severity === 'error') || (role === 'collapsed' && node.inner.error) ? 'error'
      : node.diags.length || (role === 'collapsed' && node.inner.warning) ? 'warning' : null;
    if (severity) classes.push(`diag-${severity}`);
    const group = el('g', { class: classes.join(' '), 'data-id': node.id, 'data-path': node.path, 'data-role': role,
                            transform: `translate(${info.x - info.width / 2},${info.y - info.height / 2})` }, parent);
    el('rect', { width: info.width, height: info.height, rx: role === 'join' ? info.height / 2 : 5 }, group);
    lines.forEach((line, i) => {
      const t = el('text', { x: 12, y: i === 0 ? 16 : 31, class: i === 0 ? '' : 'sub' }, group);
      if (i === 0 && role !== 'join') {
        const space = line.indexOf('  ');
        el('tspan', { class: 'name' }, t).textContent = space > 0 ? line.slice(0, space) : line;
        if (space > 0) el('tspan', {}, t).textContent = ' ' + line.slice(space + 2);
      } else {
        t.textContent = line;
      }
    });
    if (role === 'join') {
      const t = group.querySelector('text');
      t.setAttribute('x', info.width / 2);
      t.setAttribute('text-anchor', 'middle');
    }
    if (severity) {
      const count = role === 'collapsed' ? node.inner.error + node.inner.warning : node.diags.length;
      const badge = el('text', { class: 'badge', x: info.width - 16, y: 16 }, group);
      badge.textContent = `!${count > 1 ? count : ''}`;
    }
    const title = el('title', {}, group);
    title.textContent = `${node.path}${node.out ? ' → ' + node.out : ''}`;
  }

  // ------------------------------------------------------------------ zoom and pan

  function applyView() {
    const { x, y, k } = state.view;
    document.getElementById('viewport').setAttribute('transform', `translate(${x},${y}) scale(${k})`);
  }

  function fit() {
    const { g } = state.layout;
    const box = document.getElementById('canvas').getBoundingClientRect();
    const gw = g.graph().width || 1, gh = g.graph().height || 1;
    const k = Math.min(1.2, Math.max(0.05, Math.min(box.width / gw, box.height / gh)));
    // a tall network: fit the width and start at the top, rather than shrinking it to unreadable
    const kk = gh * k < box.height * 0.999 ? k : Math.max(k, Math.min(1, box.width / gw));
    state.view = { k: kk, x: (box.width - gw * kk) / 2, y: gh * kk <= box.height ? (box.height - gh * kk) / 2 : 0 };
    applyView();
  }

  function centerOn(viewId) {
    const info = state.layout.g.node(viewId);
    if (!info) return;
    const box = document.getElementById('canvas').getBoundingClientRect();
    const k = Math.max(state.view.k, 0.6);
    state.view = { k, x: box.width / 2 - info.x * k, y: box.height / 2 - info.y * k };
    applyView();
  }

  function setupPanZoom(canvas) {
    let drag = null;
    canvas.addEventListener('wheel', (ev) => {
      ev.preventDefault();
      const r = canvas.getBoundingClientRect();
      const px = ev.clientX - r.left, py = ev.clientY - r.top;
      const k = Math.min(4, Math.max(0.03, state.view.k * Math.exp(-ev.deltaY * 0.0015)));
      const f = k / state.view.k;
      state.view = { k, x: px - (px - state.view.x) * f, y: py - (py - state.view.y) * f };
      applyView();
    }, { passive: false });
    canvas.addEventListener('mousedown', (ev) => {
      drag = { x: ev.clientX, y: ev.clientY, vx: state.view.x, vy: state.view.y, moved: false };
      canvas.classList.add('dragging');
    });
    window.addEventListener('mousemove', (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      state.view.x = drag.vx + dx; state.view.y = drag.vy + dy;
      applyView();
    });
    window.addEventListener('mouseup', () => { canvas.classList.remove('dragging'); setTimeout(() => { drag = null; }, 0); });
    canvas.addEventListener('click', (ev) => {
      if (drag && drag.moved) return;
      const target = ev.target.closest('.node');
      if (!target) return;
      const node = state.byId.get(target.dataset.id);
      const role = target.dataset.role;
      if (role === 'collapsed') toggle(node.path, true);
      else if (role === 'header') toggle(node.path, false);
      select(node.id);
    });
  }

  function toggle(path, open) {
    // the node that opens or closes stays where it is on screen
    const node = [...state.byId.values()].find((n) => n.path === path);
    const before = node && state.layout ? state.layout.g.node(viewIdOf(node)) : null;
    if (open) state.expanded.add(path); else state.expanded.delete(path);
    draw();
    const after = node ? state.layout.g.node(viewIdOf(node)) : null;
    if (before && after) {
      state.view.x += (before.x - after.x) * state.view.k;
      state.view.y += (before.y - before.height / 2 - after.y + after.height / 2) * state.view.k;
    }
    applyView();
  }

  function redraw() {
    draw();
    applyView();
  }

  // ------------------------------------------------------------------ search

  function search(query) {
    state.query = query.trim().toLowerCase();
    state.hits = [];
    state.hitIndex = -1;
    if (state.query) {
      for (const node of state.byId.values()) {
        const text = `${node.path} ${node.name} ${node.op || ''} ${node.label} ${sourceLine(node)}`.toLowerCase();
        if (text.includes(state.query)) state.hits.push(node);
      }
      // a match inside a collapsed structure: open the structures around it
      for (const hit of state.hits) {
        for (let p = state.parent.get(hit.id); p; p = state.parent.get(p.id)) state.expanded.add(p.path);
      }
    }
    redraw();
    const label = document.getElementById('hits');
    label.textContent = state.query ? `${state.hits.length} match${state.hits.length === 1 ? '' : 'es'}` : '';
    if (state.hits.length) nextHit();
  }

  function nextHit() {
    if (!state.hits.length) return;
    state.hitIndex = (state.hitIndex + 1) % state.hits.length;
    const hit = state.hits[state.hitIndex];
    select(hit.id);
    centerOn(viewIdOf(hit));
  }

  function viewIdOf(node) {
    const g = state.layout.g;
    return g.hasNode(node.id) ? node.id : `${node.id}:h`;
  }

  function markHits() {
    const ids = new Set(state.hits.map((h) => h.id));
    document.querySelectorAll('#viewport .node').forEach((n) => n.classList.toggle('hit', ids.has(n.dataset.id)));
  }

  // ------------------------------------------------------------------ details and source

  function select(id) {
    state.selected = id;
    const node = state.byId.get(id);
    state.selectedPath = node ? node.path : null; // kept across an edit, when the ids are new
    markSelected();
    showDetails();
  }

  function markSelected() {
    document.querySelectorAll('#viewport .node').forEach((n) => n.classList.toggle('selected', n.dataset.id === state.selected));
  }

  function row(table, key, value) {
    if (value === null || value === undefined || value === '') return;
    const tr = document.createElement('tr');
    tr.appendChild(document.createElement('td')).textContent = key;
    tr.appendChild(document.createElement('td')).textContent = value;
    table.appendChild(tr);
  }

  function showDetails() {
    const box = document.getElementById('details');
    box.textContent = '';
    const node = state.byId.get(state.selected);
    if (!node) {
      showOverview(box);
      showSource(state.data.path, null);
      return;
    }
    const h = box.appendChild(document.createElement('h2'));
    h.textContent = `${node.path}: ${node.label}`;
    const table = box.appendChild(document.createElement('table'));
    table.id = 'facts';
    row(table, 'input', node.in);
    row(table, 'output', node.out);
    if (isGroup(node)) row(table, 'layers', fmt(layerCount(node)));
    row(table, 'params', fmt(node.params));
    row(table, 'MACs', fmt(node.macs));
    row(table, 'receptive field', node.rf);
    row(table, 'jump', node.jump);
    const where = node.file ? `${node.file === state.data.path ? '' : node.file + ' '}line ${node.line}` : '';
    row(table, 'source', where + (node.call_line && node.file !== state.data.path ? ` (called at line ${node.call_line})` : ''));
    if (node.explain.length) {
      box.appendChild(document.createElement('pre')).textContent = node.explain.join('\n');
    }
    for (const d of node.diags) diagItem(box, d);
    showSource(node.file || state.data.path, node.line);
  }

  function showOverview(box) {
    const d = state.data;
    const h = box.appendChild(document.createElement('h2'));
    h.textContent = d.path;
    const table = box.appendChild(document.createElement('table'));
    row(table, 'input', d.input);
    row(table, 'output', d.output);
    row(table, 'params', fmt(d.params));
    row(table, 'MACs', fmt(d.macs));
    if (d.diagnostics.length) {
      const p = box.appendChild(document.createElement('p'));
      p.textContent = `${d.diagnostics.length} diagnostic${d.diagnostics.length === 1 ? '' : 's'} (click one to find its layer):`;
      d.diagnostics.forEach((diag) => diagItem(box, diag));
    } else {
      box.appendChild(document.createElement('p')).className = 'hint';
      box.lastChild.textContent = 'Click a node to see its shapes, cost, arithmetic and source; click a block to open it.';
    }
  }

  function diagItem(box, d) {
    const div = box.appendChild(document.createElement('div'));
    div.className = `diag ${d.severity}`;
    div.appendChild(document.createElement('pre')).textContent = d.text;
    div.addEventListener('click', () => reveal(d));
  }

  function reveal(d) {
    if (d.node && state.byId.has(d.node)) {
      const node = state.byId.get(d.node);
      for (let p = state.parent.get(node.id); p; p = state.parent.get(p.id)) state.expanded.add(p.path);
      redraw();
      select(node.id);
      centerOn(viewIdOf(node));
    } else {
      showSource(d.file || state.data.path, d.line);
    }
  }

  function showSource(file, line) {
    const box = document.getElementById('source');
    const text = state.data.sources[file];
    box.textContent = '';
    if (text === undefined) return;
    box.appendChild(document.createElement('div')).className = 'file';
    box.lastChild.textContent = file;
    const frag = document.createDocumentFragment();
    let current = null;
    text.split('\n').forEach((t, i) => {
      const div = document.createElement('div');
      div.className = 'ln' + (i + 1 === line ? ' on' : '');
      div.appendChild(document.createElement('span')).textContent = String(i + 1);
      div.appendChild(document.createTextNode(t));
      if (vscode) div.addEventListener('click', () => vscode.postMessage({ type: 'reveal', file, line: i + 1 }));
      if (i + 1 === line) current = div;
      frag.appendChild(div);
    });
    box.appendChild(frag);
    if (current) current.scrollIntoView({ block: 'center' });
  }

  // ------------------------------------------------------------------ page

  function shell() {
    document.body.innerHTML = `
<div id="app">
  <div id="bar"><span class="title"></span><span class="totals"></span>
    <input id="search" type="search" placeholder="Search module, op or source (Enter: next)" aria-label="search">
    <span id="hits"></span>
    <button id="fit" title="fit the graph to the window">Fit</button>
    <button id="collapse" title="collapse every block">Collapse all</button>
    <button id="expand" title="open the top-level blocks one level">Expand one level</button>
  </div>
  <div id="canvas"><svg><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
    <path d="M0,0L10,5L0,10z" fill="#6e7781"/></marker></defs><g id="viewport"></g></svg></div>
  <div id="side"><div id="details"></div><div id="source"></div></div>
</div>`;
    setupPanZoom(document.getElementById('canvas'));
    const input = document.getElementById('search');
    input.addEventListener('input', () => search(input.value));
    input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') nextHit(); });
    document.getElementById('fit').addEventListener('click', fit);
    document.getElementById('collapse').addEventListener('click', () => { state.expanded.clear(); redraw(); fit(); });
    document.getElementById('expand').addEventListener('click', expandOneLevel);
    window.addEventListener('resize', () => { if (state.layout) fit(); });
  }

  function expandOneLevel() {
    // open every structure whose parents are open: one more level of the network
    const open = [...state.byId.values()].filter((n) => isGroup(n) && !state.expanded.has(n.path)
      && (() => { for (let p = state.parent.get(n.id); p; p = state.parent.get(p.id)) if (!state.expanded.has(p.path)) return false; return true; })());
    open.forEach((n) => state.expanded.add(n.path));
    redraw();
    fit();
  }

  function load(data) {
    const first = !state.data;
    state.data = data;
    index(data);
    document.querySelector('#bar .title').textContent = data.path;
    const verdict = data.ok ? '' : ` · ${data.diagnostics.filter((d) => d.severity === 'error').length} error(s)`;
    document.querySelector('#bar .totals').textContent =
      `${data.input || '?'} → ${data.output || '?'} · ${fmt(data.params)} params${verdict}`;
    if (state.selected && !state.byId.has(state.selected)) {
      // after an edit the ids are new: keep the selection by module path
      const same = [...state.byId.values()].find((n) => n.path === state.selectedPath);
      state.selected = same ? same.id : null;
    }
    if (state.query) search(document.getElementById('search').value); else redraw();
    if (first) fit();
    showDetails();
    if (!state.painted) {
      state.painted = true;
      requestAnimationFrame(() => {
        window.archspecFirstPaint = performance.now();
        document.body.dataset.ready = '1';
      });
    }
  }

  function start() {
    const data = JSON.parse(document.getElementById('archspec-data').textContent);
    shell();
    window.archspecView = { expand: (p) => toggle(p, true), collapse: (p) => toggle(p, false), search, select };
    window.addEventListener('message', (ev) => { if (ev.data && ev.data.type === 'data') load(ev.data.data); });
    if (data) load(data);
    else if (vscode) vscode.postMessage({ type: 'ready' });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
