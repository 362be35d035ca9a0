// Copies dagre's browser build (graphlib is bundled inside it) into the archspec package, with
// its licence at the top, and writes THIRD_PARTY.md: what ships, at which version, under which licence.
// Run: npm ci --prefix tools/view-bundle && npm run build --prefix tools/view-bundle
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const web = join(here, '..', '..', 'archspec', 'views', 'web');
const modules = join(here, 'node_modules', '@dagrejs');
const pkg = (name) => JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8'));
const licence = (name) => readFileSync(join(modules, name, 'LICENSE'), 'utf8').trim();

const dagre = pkg('dagre');
const graphlib = pkg('graphlib');
// the source-map and "see LEGAL.txt" trailers point at files that are not shipped: the licence goes on top instead
const body = readFileSync(join(modules, 'dagre', 'dist', 'dagre.min.js'), 'utf8')
  .split('\n').filter((line) => !line.startsWith('//# sourceMappingURL') && !line.startsWith('/*! For license information'))
  .join('\n').trim();
const header = `/*! @dagrejs/dagre ${dagre.version} (${dagre.license}), with @dagrejs/graphlib ${graphlib.version} (${graphlib.license}) inside.\n` +
  `${licence('dagre')}\n*/\n`;
mkdirSync(join(web, 'vendor'), { recursive: true });
writeFileSync(join(web, 'vendor', 'dagre.min.js'), header + body + '\n');

const table = [dagre, graphlib].map((p) => `| ${p.name} | ${p.version} | ${p.license} | ${p.repository && p.repository.url || p.homepage || ''} |`);
writeFileSync(join(web, 'THIRD_PARTY.md'), `# Third-party code in archspec/views/web/

\`vendor/dagre.min.js\` is dagre's own browser build (\`dist/dagre.min.js\` of the npm package), which
bundles graphlib. It is copied, with its licence on top, by tools/view-bundle/build.mjs; the versions
are pinned in tools/view-bundle/package-lock.json. Rebuild with:

    npm ci --prefix tools/view-bundle && npm run build --prefix tools/view-bundle

| package | version | licence | source |
| --- | --- | --- | --- |
${table.join('\n')}

## @dagrejs/dagre

${licence('dagre')}

## @dagrejs/graphlib

${licence('graphlib')}
`);
console.log(`wrote ${join(web, 'vendor', 'dagre.min.js')} (dagre ${dagre.version}, graphlib ${graphlib.version})`);
