// The npm package as a user gets it: `npm pack`, installed into a new project without the
// network, running the Node example of docs/clients.md against a real server.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { repoRoot, startServer } from '../test-support/harness.js';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The heading under which docs/clients.md and the package's README show the example. */
const EXAMPLE_HEADING = 'Installing it';

/** What a user of the package needs, and nothing else (npm adds package.json and README). */
const PACKED_FILES = ['README.md', 'package.json', 'switchboard.d.ts', 'switchboard.js'];

/**
 * Runs `command args` in `cwd` within `ms`; resolves with its output, rejects with it.
 * npm's own variables from the `npm test` around this run are left out, so that the nested
 * npm sees the new project as a user's shell would.
 */
function run(command, args, { cwd, env = {}, ms = 60000 }) {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')),
  );
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd, env: { ...clean, ...env }, timeout: ms, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        if (error) {
          const output = `${stdout}${stderr}`;
          reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${output}`));
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
  });
}

/** The first fenced `js` block after the heading `heading`, of any level, in Markdown `text`. */
function exampleUnder(text, heading) {
  const start = text.search(new RegExp(`^#+ ${heading}$`, 'm'));
  assert.notEqual(start, -1, `no "${heading}" heading`);
  const match = /```js\n([\s\S]*?)```/.exec(text.slice(start));
  assert.ok(match, `no js block under "${heading}"`);
  return match[1];
}

describe('the npm package', () => {
  let dir;
  let server;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'switchboard-package-'));
    server = await startServer();
  });

  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // Each step has its own bound (`run`); this one bounds the whole.
  const name = 'installs offline into a new project and runs the documented example';
  test(name, { timeout: 120000 }, async () => {
    const manifest = JSON.parse(await readFile(path.join(packageDir, 'package.json'), 'utf8'));
    // Nothing to download: the module is the whole package.
    assert.deepEqual(manifest.dependencies ?? {}, {});

    const { stdout: packed } = await run(
      'npm',
      ['pack', '--json', '--pack-destination', dir],
      { cwd: packageDir },
    );
    const [tarball] = JSON.parse(packed);
    assert.equal(tarball.name, 'switchboard-client');
    assert.equal(tarball.filename, `switchboard-client-${manifest.version}.tgz`);
    assert.deepEqual(tarball.files.map((file) => file.path).sort(), PACKED_FILES);

    const app = path.join(dir, 'app');
    await mkdir(app);
    await run('npm', ['init', '-y'], { cwd: app });
    // `ws` stands for the user's own `npm install ws` (Node 20 has no global WebSocket); it
    // comes from this package's devDependencies, so that nothing is downloaded.
    await run(
      'npm',
      [
        'install',
        '--offline',
        '--no-audit',
        '--no-fund',
        path.join(dir, tarball.filename),
        path.join(packageDir, 'node_modules', 'ws'),
      ],
      { cwd: app },
    );
    const installed = path.join(app, 'node_modules', 'switchboard-client');
    assert.ok(existsSync(path.join(installed, 'switchboard.js')));
    const installedManifest = JSON.parse(await readFile(path.join(installed, 'package.json')));
    assert.equal(installedManifest.exports['.'].types, './switchboard.d.ts');
    assert.ok(existsSync(path.join(installed, installedManifest.types)));

    // The example as the docs show it, and the package's README shows the same.
    const docs = await readFile(path.join(repoRoot, 'docs', 'clients.md'), 'utf8');
    const example = exampleUnder(docs, EXAMPLE_HEADING);
    const readme = await readFile(path.join(packageDir, 'README.md'), 'utf8');
    assert.equal(exampleUnder(readme, EXAMPLE_HEADING), example);
    assert.match(example, /from 'switchboard-client'/);
    await writeFile(path.join(app, 'example.mjs'), example);

    const { stdout } = await run(process.execPath, ['example.mjs'], {
      cwd: app,
      env: { SWITCHBOARD_URL: server.url },
      ms: 20000,
    });
    assert.match(stdout, /^published at offset \d+$/m);
    assert.match(stdout, /^received \{"text":"hello"\} at offset \d+$/m);
  });
});
