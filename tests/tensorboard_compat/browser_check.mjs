// Drives a real browser (Debian's chromium via playwright-core) through
// TensorBoard's web UI over a run trainbus wrote, and saves screenshots.
//
//   node browser_check.mjs BASE_URL RUN TAG[,TAG...] OUT_DIR
//        [--image-tag=inputs] [--hparams-metrics=TAG,TAG...] [--text=RUN:TAG:WORDS]
//        [--graph=ROOT:MODULE] [--projector=TENSOR:POINTS] [--video-tag=TAG]
//        [--mesh=RUN:TAG]
//
// Checks, each dashboard within a bounded time:
//   scalars  (#timeseries, TensorBoard 2.x's default page): RUN is listed in
//            the runs selector, and every TAG shows as a card whose data
//            table lists RUN (so its data arrived, not just its name);
//   hparams  (#hparams): the table view has a row for RUN;
//   images   (#images): the image tag (default "inputs") of RUN renders as an
//            <img> with naturalWidth > 0;
//   text     (#text, with --text): the text record TAG of that RUN renders as a
//            markdown table whose cells contain WORDS;
//   video    (#images, with --video-tag): the tag's animated GIF of RUN loads
//            like an image;
//   mesh     (#mesh, with --mesh): the mesh TAG of that RUN draws into a
//            WebGL canvas;
//   graphs   (#graphs, with --graph): RUN's graph draws its ROOT module, which
//            opens (double click) to show MODULE among its children;
//   projector (#projector, with --projector): the Projector loads RUN's
//            embedding and reports "Points: POINTS" (WebGL through
//            SwiftShader); TENSOR names it in messages (the page shows its
//            name only inside a drop-down).
// Writes OUT_DIR/{scalars,hparams,images}.png (and text.png, graphs.png, projector.png). On the first failure it prints
// one line naming the dashboard and what was missing, saves
// OUT_DIR/failure-<dashboard>.png and exits 1.
//
// Screenshot polish (never fails the check): raw curves without outlier
// clipping, settings pane closed; on HParams only --hparams-metrics are shown
// as metrics (TensorBoard shows the first five otherwise) and the row's
// "Show Metrics" charts are open.
//
// TensorBoard mixes Angular and Polymer (shadow DOM); Playwright's CSS and
// text locators pierce open shadow roots, so plain selectors work. The
// selectors are those of TensorBoard 2.21 (requirements.txt beside this file).

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const VIEWPORT = { width: 1340, height: 1040 };  // 2x2 scalar cards, whole tab bar
// Generous: these bound a broken page, not a slow machine. With both cores
// busy a dashboard takes several times longer to draw (on CI, beside a
// two-job compile, the scalars page missed a 60 s budget made of 20 s tries).
const DASHBOARD_TIMEOUT_MS = 180_000;
const ATTEMPT_MS = 30_000;    // the first try; each later one gets 30 s more
// All dashboards together, from the start (the whole test, training
// included, takes 80-170 s when it passes). test_browser.py's timeout of
// this program stays above it, so that a slow failure still names its
// dashboard and saves its screenshot instead of being cut off.
const CHECK_TIMEOUT_MS = 480_000;
const checkDeadline = Date.now() + CHECK_TIMEOUT_MS;
const COSMETIC_MS = 3_000;

// ESM ignores NODE_PATH, so resolve playwright-core through require(), which
// honours it, then fall back to the test-tools folder.
function loadPlaywright() {
  const require = createRequire(import.meta.url);
  const tools = process.env.TRAINBUS_TEST_TOOLS || path.join(here, '..', '..', 'build', 'test-tools');
  for (const c of ['playwright-core', path.resolve(tools, 'node_modules', 'playwright-core')]) {
    try { return require(c); } catch { /* try the next one */ }
  }
  console.log('browser_check: FAIL setup: playwright-core not found (NODE_PATH, ' +
      `${tools}/node_modules); run scripts/setup-test-tools.sh`);
  process.exit(1);
}

class CheckFailure extends Error {
  constructor(dashboard, message) { super(message); this.dashboard = dashboard; }
}

// An error that says, in words, what was not found.
function missing(what, cause) {
  const err = new Error(cause ? cause.message : what);
  err.what = what;
  return err;
}

const escapeRegex = s => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// Runs `attempt` until it succeeds or the dashboard's budget is spent. Each
// attempt loads the page afresh: that covers a TensorBoard whose loader had
// not read everything when the page first asked (the UI itself only
// refreshes every 30 s), and a goto() that changes only the hash would not
// reload the page.
async function withRetries(page, dashboard, attempt) {
  const deadline = Math.min(Date.now() + DASHBOARD_TIMEOUT_MS, checkDeadline);
  let lastError;
  // A try that ran out of time on a loaded machine would run out the same
  // way again: each one gets longer (30, 60, 90 s).
  for (let tries = 1; Date.now() < deadline; tries++) {
    const end = Math.min(Date.now() + tries * ATTEMPT_MS, deadline);
    try {
      await page.goto('about:blank');
      await attempt(() => Math.max(1, end - Date.now()));
      return;
    } catch (e) {
      lastError = e;
    }
  }
  const what = (lastError && (lastError.what || lastError.message.split('\n')[0])) || 'timed out';
  const budget = deadline === checkDeadline
    ? `the whole check's ${CHECK_TIMEOUT_MS / 1000} s spent`
    : `within ${DASHBOARD_TIMEOUT_MS / 1000} s`;
  throw new CheckFailure(dashboard, `${what} (${budget})`);
}

async function expectVisible(locator, what, timeout) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout });
  } catch (e) {
    throw missing(what, e);
  }
}

async function bestEffort(fn) {
  try { await fn(); } catch { /* polish only */ }
}

// Scrolls every scrolled container back to the top (clicking far down a side
// pane scrolls it), shadow roots included.
async function scrollAllToTop(page) {
  await page.evaluate(() => {
    const walk = root => {
      for (const e of root.querySelectorAll('*')) {
        if (e.scrollTop) e.scrollTop = 0;
        if (e.shadowRoot) walk(e.shadowRoot);
      }
    };
    walk(document);
  });
}

async function checkScalars(page, base, run, tags) {
  await withRetries(page, 'scalars', async (left) => {
    await page.goto(`${base}/#timeseries`);
    await expectVisible(page.locator('runs-selector').getByText(run, { exact: true }),
        `run "${run}" not listed in the runs selector of #timeseries`, left());

    // Polish: the validation series have a handful of points, so smoothing
    // and outlier clipping would draw them off the chart.
    await bestEffort(async () => {
      await page.getByText('Ignore outliers in chart scaling', { exact: true })
          .click({ timeout: COSMETIC_MS });
      const smoothing = page.locator('metrics-dashboard-settings input.slider-input').first();
      await smoothing.click({ timeout: COSMETIC_MS });
      await smoothing.press('Control+a');
      await smoothing.pressSequentially('0');  // fill() does not reach Angular's handler
      await smoothing.press('Enter');
      // Applied after a debounce, which closing the pane would cut short;
      // TensorBoard stores applied settings in localStorage.
      await page.waitForFunction(
          () => /"scalarSmoothing":0[,}]/.test(localStorage.getItem('_tb_global_settings') || ''),
          null, { timeout: COSMETIC_MS });
    });
    await bestEffort(() => page.locator('button[aria-label="Close side pane"]')
        .click({ timeout: COSMETIC_MS }));

    // All but the first groups start collapsed, so filter to exactly the
    // expected tags as a user would: the matches form one flat group.
    const filter = page.locator('metrics-tag-filter input');
    await expectVisible(filter, 'no tag filter box on #timeseries', left());
    await filter.fill(`^(${tags.map(escapeRegex).join('|')})$`);
    await filter.press('Escape');  // closes the autocomplete list over the cards

    for (const tag of tags) {
      const card = page.locator('metrics-filtered-view card-view')
          .filter({ has: page.locator(`tb-truncated-path[title=${JSON.stringify(tag)}]`) });
      await expectVisible(card, `no card titled "${tag}" on #timeseries`, left());
      // A card fetches its data only once scrolled into view.
      await card.first().scrollIntoViewIfNeeded({ timeout: left() })
          .catch(e => { throw missing(`card "${tag}" on #timeseries could not be scrolled to`, e); });
      await expectVisible(card.getByText(run, { exact: true }),
          `card "${tag}" on #timeseries never showed data of run "${run}"`, left());
    }
  });
  await scrollAllToTop(page);
  await page.waitForTimeout(500);  // the last chart's paint
}

async function checkHparams(page, base, run, metrics) {
  const table = page.locator('tf-hparams-table-view');
  await withRetries(page, 'hparams', async (left) => {
    await page.goto(`${base}/#hparams`);
    // The trial id is the session's name: the run, or a folder inside it.
    await expectVisible(table.getByText(new RegExp(`^\\s*${escapeRegex(run)}(/\\S*)?\\s*$`)),
        `no row for run "${run}" in the table view of #hparams`, left());
  });

  if (metrics.length > 0) {
    await bestEffort(async () => {
      const boxes = page.locator('tf-hparams-query-pane paper-checkbox.metric-checkbox');
      const count = await boxes.count();
      for (let i = 0; i < count; i++) {
        const box = boxes.nth(i);
        const [name, checked] = await box.evaluate(e => [e.textContent.trim(), !!e.checked]);
        if (metrics.includes(name) !== checked) await box.click({ timeout: COSMETIC_MS });
      }
      // The table is queried again: wait for the row to be back.
      await table.getByText(run, { exact: true }).first()
          .waitFor({ state: 'visible', timeout: COSMETIC_MS });
    });
  }
  // "Show Metrics" on the row (the grid also holds a hidden template row)
  // plots the session's metrics under it.
  await bestEffort(async () => {
    await table.locator('vaadin-grid-cell-content paper-checkbox:visible').first()
        .click({ timeout: COSMETIC_MS });
    const charts = table.locator('tf-hparams-session-group-details vz-line-chart2');
    await charts.first().waitFor({ state: 'visible', timeout: COSMETIC_MS });
    // Drawn once each chart's SVG line has a path, with the number of
    // charts settled (they appear one by one).
    const end = Date.now() + COSMETIC_MS;
    let previous = -1;
    while (Date.now() < end) {
      const wanted = await charts.count();
      const lines = await charts.locator('path.line').evaluateAll(
          ps => ps.filter(p => (p.getAttribute('d') || '').length > 0).length);
      if (wanted > 0 && lines >= wanted && wanted === previous) break;
      previous = wanted;
      await page.waitForTimeout(200);
    }
  });
  await scrollAllToTop(page);
  await page.waitForTimeout(300);
}

async function checkText(page, base, { run, tag, words }) {
  await withRetries(page, 'text', async (left) => {
    await page.goto(`${base}/#text`);
    const card = page.locator('tf-text-loader')
        .filter({ has: page.getByText(run, { exact: true }) })
        .filter({ has: page.getByText(tag, { exact: true }) });
    await expectVisible(card, `text "${tag}" of run "${run}" not shown on #text`, left());
    await expectVisible(card.locator('table td').filter({ hasText: words }),
        `text "${tag}" of run "${run}" on #text has no table cell with "${words}"`, left());
  });
  await scrollAllToTop(page);
  await page.waitForTimeout(300);
}

async function checkImages(page, base, run, imageTag) {
  await withRetries(page, 'images', async (left) => {
    await page.goto(`${base}/#images`);
    const img = page.locator('tf-image-loader')
        .filter({ has: page.getByText(run, { exact: true }) })
        .filter({ has: page.getByText(imageTag, { exact: true }) })
        .locator('img');
    const what = `image "${imageTag}" of run "${run}" not shown on #images`;
    await expectVisible(img, what, left());
    // Visible is not loaded: wait until the browser has decoded pixels.
    while (!(await img.first().evaluate(e => e.complete && e.naturalWidth > 0).catch(() => false))) {
      if (left() <= 1) throw missing(`${what} (its <img> never loaded)`);
      await page.waitForTimeout(200);
    }
  });
}

async function checkMesh(page, base, { run, tag }) {
  await withRetries(page, 'mesh', async (left) => {
    await page.goto(`${base}/#mesh`);
    // A card names neither run nor tag on screen: they are the element's
    // (Polymer) properties.
    const cards = page.locator('tf-mesh-loader');
    await expectVisible(cards, `no mesh card on #mesh`, left());
    let index = -1;
    while (index < 0) {
      const ids = await cards.evaluateAll(es => es.map(e => [e.run, e.tag]));
      index = ids.findIndex(([r, t]) => r === run && t === tag);
      if (index >= 0) break;
      if (left() <= 1) throw missing(`mesh "${tag}" of run "${run}" not shown on #mesh (cards: ${JSON.stringify(ids)})`);
      await page.waitForTimeout(200);
    }
    await expectVisible(cards.nth(index).locator('canvas'),
        `mesh "${tag}" of run "${run}" has no canvas`, left());
  });
}

async function checkGraph(page, base, run, { root, module }) {
  await withRetries(page, 'graphs', async (left) => {
    await page.goto(`${base}/#graphs&run=${encodeURIComponent(run)}`);
    // A node's <text> holds its label (and a <title> with the same words).
    const node = name => page.locator('tf-graph-scene g.node').filter({ hasText: name });
    await expectVisible(node(root).first(), `run "${run}" has no graph node "${root}" on #graphs`, left());
    await node(root).first().dblclick();
    await expectVisible(node(module).first(),
        `graph node "${root}" of run "${run}" did not open to show "${module}"`, left());
    await bestEffort(async () => {
      await page.getByText('Fit to screen', { exact: true }).click({ timeout: COSMETIC_MS });
      await page.waitForTimeout(1500);
    });
  });
}

// The Projector runs in two nested iframes (plugin_entry.html, then
// projector_binary.html) and draws with WebGL.
async function checkProjector(page, base, run, { tensor, points }) {
  await withRetries(page, 'projector', async (left) => {
    await page.goto(`${base}/#projector&run=${encodeURIComponent(run)}`);
    let frame;
    while (!(frame = page.frames().find(f => f.url().includes('projector_binary')))) {
      if (left() <= 1) throw missing(`the Projector's page (projector_binary.html) never loaded`);
      await page.waitForTimeout(200);
    }
    const projector = frame;
    await expectVisible(projector.getByText(`Points: ${points}`).first(),
        `the Projector does not report "Points: ${points}" for "${tensor}"`, left());
    await page.waitForTimeout(3000);  // the thumbnails load into the scatter plot
  });
}

// Crops the blank space under short pages: ends below the lowest of `items`
// that fits in the viewport, so nothing is cut in half. Full width, so the
// tab bar stays.
async function screenshot(page, file, items, minHeight = 0) {
  let clip;
  if (items) {
    const bottoms = await items.evaluateAll(es => es.map(e => e.getBoundingClientRect())
        .filter(r => r.height > 0).map(r => r.bottom)).catch(() => []);
    const fitting = bottoms.filter(b => b <= VIEWPORT.height - 16);
    if (fitting.length > 0) {
      const height = Math.min(VIEWPORT.height, Math.max(minHeight, Math.ceil(Math.max(...fitting) + 16)));
      clip = { x: 0, y: 0, width: VIEWPORT.width, height };
    }
  }
  await page.screenshot({ path: file, clip });
}

function parseArgs(argv) {
  const options = { imageTag: 'inputs', hparamsMetrics: [], text: null, graph: null, projector: null,
    videoTag: null, mesh: null };
  const positional = [];
  for (const a of argv) {
    if (a.startsWith('--image-tag=')) options.imageTag = a.slice('--image-tag='.length);
    else if (a.startsWith('--hparams-metrics=')) options.hparamsMetrics = splitList(a.slice('--hparams-metrics='.length));
    else if (a.startsWith('--text=')) {
      const [run, tag, ...words] = a.slice('--text='.length).split(':');
      if (!run || !tag || words.length === 0) usage(`--text needs RUN:TAG:WORDS, got ${a}`);
      options.text = { run, tag, words: words.join(':') };
    } else if (a.startsWith('--video-tag=')) {
      options.videoTag = a.slice('--video-tag='.length);
    } else if (a.startsWith('--mesh=')) {
      const [run, tag] = a.slice('--mesh='.length).split(':');
      if (!run || !tag) usage(`--mesh needs RUN:TAG, got ${a}`);
      options.mesh = { run, tag };
    } else if (a.startsWith('--graph=')) {
      const [root, module] = a.slice('--graph='.length).split(':');
      if (!root || !module) usage(`--graph needs ROOT:MODULE, got ${a}`);
      options.graph = { root, module };
    } else if (a.startsWith('--projector=')) {
      const value = a.slice('--projector='.length);
      const colon = value.lastIndexOf(':');
      const points = Number(value.slice(colon + 1));
      if (colon <= 0 || !(points > 0)) usage(`--projector needs TENSOR:POINTS, got ${a}`);
      options.projector = { tensor: value.slice(0, colon), points };
    } else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else positional.push(a);
  }
  if (positional.length !== 4) usage('expected 4 arguments');
  const [base, run, tags, outDir] = positional;
  return { base: base.replace(/\/+$/, ''), run, tags: splitList(tags), outDir, ...options };
}

function splitList(s) { return s.split(',').map(t => t.trim()).filter(Boolean); }

function usage(problem) {
  console.log(`browser_check: ${problem}\nusage: node browser_check.mjs BASE_URL RUN TAG[,TAG...] ` +
      'OUT_DIR [--image-tag=inputs] [--hparams-metrics=TAG,TAG...] [--text=RUN:TAG:WORDS] ' +
      '[--graph=ROOT:MODULE] [--projector=TENSOR:POINTS] [--video-tag=TAG] [--mesh=RUN:TAG]');
  process.exit(2);
}

async function main() {
  const { base, run, tags, outDir, imageTag, hparamsMetrics, text, graph, projector, videoTag,
    mesh } = parseArgs(process.argv.slice(2));
  fs.mkdirSync(outDir, { recursive: true });

  const { chromium } = loadPlaywright();
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    console.log(`browser_check: FAIL setup: no chromium at ${executablePath}; run scripts/setup-test-tools.sh`);
    process.exit(1);
  }
  let browser;
  try {
    // --no-sandbox: the tests run as root, where chromium refuses its sandbox.
    // SwiftShader: WebGL without a GPU, for the Projector.
    browser = await chromium.launch({ executablePath, headless: true, timeout: 60_000,
      args: ['--no-sandbox', '--use-gl=angle', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'] });
  } catch (e) {
    console.log(`browser_check: FAIL setup: ${executablePath} did not start: ${e.message.split('\n')[0]}`);
    process.exit(1);
  }

  let current = 'setup';
  let page;
  try {
    // A fresh profile: no TensorBoard settings stored by an earlier run.
    const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
    page = await context.newPage();
    page.setDefaultTimeout(DASHBOARD_TIMEOUT_MS);
    page.setDefaultNavigationTimeout(60_000);

    current = 'scalars';
    await checkScalars(page, base, run, tags);
    await screenshot(page, path.join(outDir, 'scalars.png'));

    current = 'hparams';
    await checkHparams(page, base, run, hparamsMetrics);
    await screenshot(page, path.join(outDir, 'hparams.png'),
        page.locator('tf-hparams-table-view tf-hparams-session-group-details tf-scalar-card'), 480);

    current = 'images';
    await checkImages(page, base, run, imageTag);
    await screenshot(page, path.join(outDir, 'images.png'),
        page.locator('tf-image-dashboard tf-image-loader'), 520);

    if (videoTag) {
      current = 'video';
      await checkImages(page, base, run, videoTag);
    }

    if (text) {
      current = 'text';
      await checkText(page, base, text);
      await screenshot(page, path.join(outDir, 'text.png'), page.locator('tf-text-loader'), 360);
    }

    if (mesh) {
      current = 'mesh';
      await checkMesh(page, base, mesh);
    }

    if (graph) {
      current = 'graphs';
      await checkGraph(page, base, run, graph);
      await screenshot(page, path.join(outDir, 'graphs.png'));
    }

    if (projector) {
      current = 'projector';
      await checkProjector(page, base, run, projector);
      await screenshot(page, path.join(outDir, 'projector.png'));
    }

    console.log(`browser_check: OK run "${run}": ${tags.length} scalar cards, hparams row, ` +
        `image "${imageTag}"${text ? `, text "${text.tag}" of "${text.run}"` : ''}` +
        `${graph ? `, graph "${graph.root}" with "${graph.module}"` : ''}` +
        `${projector ? `, projector "${projector.tensor}" (${projector.points} points)` : ''}` +
        `${videoTag ? `, video "${videoTag}"` : ''}${mesh ? `, mesh "${mesh.tag}" of "${mesh.run}"` : ''}; ` +
        `screenshots in ${outDir}`);
  } catch (e) {
    const dashboard = e instanceof CheckFailure ? e.dashboard : current;
    const message = e instanceof CheckFailure ? e.message : (e.what || e.message.split('\n')[0]);
    console.log(`browser_check: FAIL ${dashboard}: ${message}`);
    if (page) {
      await page.screenshot({ path: path.join(outDir, `failure-${dashboard}.png`) }).catch(() => {});
    }
    process.exitCode = 1;
  } finally {
    await browser.close().catch(() => {});
  }
}

await main();
