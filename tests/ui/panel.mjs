// Drives JupyterLab in headless Debian Chromium (playwright-core, never a downloaded browser).
// Usage: node panel.mjs BASE_URL TOKEN SCREENSHOT_DIR MODE   (MODE: full | load)
// Prints one JSON line of results; exits 1 with the failing step on stderr.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(join(process.env.AIWB_NODE_MODULES, 'x.js'));
const { chromium } = require('playwright-core');
const [base, token, shots, mode = 'full'] = process.argv.slice(2);
const results = {};
const profile = mkdtempSync(join(tmpdir(), 'aiwb-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const page = context.pages()[0] ?? (await context.newPage());
const errors = [];
page.on('pageerror', e => errors.push(String(e)));

async function step(name, fn) {
  try {
    return await fn();
  } catch (e) {
    await page.screenshot({ path: join(shots, `failed-${name}.png`) }).catch(() => {});
    console.error(`step ${name} failed: ${e}\npage errors: ${errors.join('\n')}`);
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    process.exit(1);
  }
}

async function openPanel() {
  const tab = page.locator('.lm-TabBar-tab[data-id="aiworkbench-panel"]');
  await tab.waitFor({ timeout: 60000 });
  if (!(await page.locator('#aiworkbench-panel').isVisible())) await tab.click();
  await page.locator('#aiworkbench-panel .aiwb-phase').waitFor({ timeout: 30000 });
}

async function refreshUntil(locator, timeout = 120000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if ((await locator.count()) > 0) return;
    await page.locator('#aiworkbench-panel .aiwb-refresh').click();
    await page.waitForTimeout(500);
  }
  throw new Error(`not shown within ${timeout} ms: ${locator}`);
}

const t0 = Date.now();
await step('load', async () => {
  await page.goto(`${base}lab?token=${token}&reset`, { waitUntil: 'domcontentloaded' });
  await page.locator('#jp-main-dock-panel').waitFor({ timeout: 60000 });
  results.lab_ready_ms = Date.now() - t0;
  await openPanel();
  // rendered: the phase and KPI sections hold their data, or their honest "no data yet" line
  await page.locator('#aiworkbench-panel .aiwb-phase :is(.aiwb-phase-name, .aiwb-nodata, .aiwb-error)').first().waitFor();
  await page.locator('#aiworkbench-panel .aiwb-kpis :is(.aiwb-kpi, .aiwb-nodata, .aiwb-error)').first().waitFor();
  await page.locator('#aiworkbench-panel .aiwb-model').first().waitFor();
  // the data, services and CI sections: their rows, or their "no ... yet" line, or an error
  for (const [section, row] of [['data', 'aiwb-view'], ['services', 'aiwb-service'], ['ci', 'aiwb-ci-run']]) {
    await page.locator(`#aiworkbench-panel .aiwb-${section} :is(.${row}, .aiwb-nodata, .aiwb-error)`).first().waitFor();
  }
  await page.locator('#aiworkbench-panel .aiwb-data :is(.aiwb-lake-table, .aiwb-nodata, .aiwb-error)').first().waitFor();
  results.panel_rendered_ms = Date.now() - t0;
  const data = (nodes, attr) => nodes.map(n => n.dataset[attr]); // runs in the page: `attr` passed in
  results.data_text = await page.locator('#aiworkbench-panel .aiwb-data').innerText();
  results.services_text = await page.locator('#aiworkbench-panel .aiwb-services').innerText();
  results.ci_text = await page.locator('#aiworkbench-panel .aiwb-ci').innerText();
  results.tables = await page.locator('#aiworkbench-panel .aiwb-lake-table').evaluateAll(data, 'table');
  results.views = await page.locator('#aiworkbench-panel .aiwb-view').evaluateAll(data, 'view');
  results.services = await page.locator('#aiworkbench-panel .aiwb-service').evaluateAll(data, 'service');
  results.ci_runs = await page.locator('#aiworkbench-panel .aiwb-ci-run').evaluateAll(data, 'ciRun');
  results.section_gaps = await page
    .locator('#aiworkbench-panel :is(.aiwb-data, .aiwb-services, .aiwb-ci) :is(.aiwb-nodata, .aiwb-error)')
    .allInnerTexts();
  await page.locator('#aiworkbench-panel .aiwb-ci').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(shots, 'panel-data-services-ci.png') });
  await page.locator('#aiworkbench-panel .aiwb-phase').scrollIntoViewIfNeeded();
  results.phase_text = await page.locator('#aiworkbench-panel .aiwb-phase').innerText();
  results.phase_number = await page.locator('#aiworkbench-panel .aiwb-phase .aiwb-phase-number').allInnerTexts();
  results.kpis_text = await page.locator('#aiworkbench-panel .aiwb-kpis').innerText();
  results.kpi_keys = await page
    .locator('#aiworkbench-panel .aiwb-kpis .aiwb-kpi')
    .evaluateAll(nodes => nodes.map(n => n.dataset.kpi));
  // "No phase yet", "No KPIs yet" or an error line where data belongs
  results.phase_kpi_gaps = await page
    .locator('#aiworkbench-panel :is(.aiwb-phase, .aiwb-kpis) :is(.aiwb-nodata, .aiwb-error)')
    .allInnerTexts();
  await page.screenshot({ path: join(shots, 'panel.png') });
});

if (mode === 'full') {
  const alias = page.locator('#aiworkbench-panel .aiwb-model[data-model="model-00"] .aiwb-alias[data-alias="champion"]');
  await step('promote', async () => {
    results.alias_before = await alias.innerText();
    await page.locator('#aiworkbench-panel .aiwb-model[data-model="model-00"] .aiwb-promote').click();
    await page.locator('.jp-Dialog .aiwb-promote-version').fill('2');
    await page.locator('.jp-Dialog .jp-mod-accept').click();
    await page.locator('#aiworkbench-panel .aiwb-alias', { hasText: 'champion@v2' }).waitFor({ timeout: 30000 });
    results.alias_after_promote = await alias.innerText();
    await page.screenshot({ path: join(shots, 'promoted.png') });
  });
  await step('rollback', async () => {
    await page.locator('#aiworkbench-panel .aiwb-model[data-model="model-00"] .aiwb-rollback').click();
    await page.locator('.jp-Dialog .jp-mod-accept').click();
    await page.locator('#aiworkbench-panel .aiwb-alias', { hasText: 'champion@v1' }).waitFor({ timeout: 30000 });
    results.alias_after_rollback = await alias.innerText();
  });
  await step('run-as-job', async () => {
    await page.goto(`${base}lab/tree/nbs/train.ipynb?token=${token}`, { waitUntil: 'domcontentloaded' });
    await page.locator('.aiwb-run-as-job-button').first().waitFor({ timeout: 60000 });
    await page.locator('.aiwb-run-as-job-button').first().click();
    await page.locator('.jp-Dialog input[name="param-epochs"]').waitFor();
    results.form_defaults = {
      epochs: await page.locator('.jp-Dialog input[name="param-epochs"]').inputValue(),
      label: await page.locator('.jp-Dialog input[name="param-label"]').inputValue(),
    };
    await page.locator('.jp-Dialog input[name="name"]').fill('train-ui');
    await page.locator('.jp-Dialog input[name="param-epochs"]').fill('4');
    await page.screenshot({ path: join(shots, 'run-as-job-form.png') });
    await page.locator('.jp-Dialog .jp-mod-accept').click();
    await openPanel();
    const job = page.locator('#aiworkbench-panel .aiwb-job[data-job="train-ui"]');
    await refreshUntil(job.locator('.aiwb-job-run'));
    await refreshUntil(job.locator('.aiwb-run-succeeded'));
    results.job_run_text = await job.innerText();
    await page.screenshot({ path: join(shots, 'job-run.png') });
  });
  await step('sweep', async () => {
    await page.goto(`${base}lab/tree/nbs/sweep.ipynb?token=${token}`, { waitUntil: 'domcontentloaded' });
    const button = page.locator('.aiwb-run-as-job-button:visible'); // sweep.ipynb's (train.ipynb may be open too)
    await button.first().waitFor({ timeout: 60000 });
    await page.locator('.jp-NotebookPanel:visible', { hasText: 'log_metric' }).waitFor({ timeout: 60000 });
    await button.first().click();
    await page.locator('.jp-Dialog select[name="mode"]').selectOption('sweep');
    const dialog = page.locator('.jp-Dialog');
    await dialog.locator('textarea[name="sweep-params"]').fill('x=float(0,1)');
    await dialog.locator('input[name="sweep-trials"]').fill('2');
    await dialog.locator('input[name="sweep-parallel"]').fill('2');
    await dialog.locator('input[name="sweep-metric"]').fill('loss');
    await dialog.locator('input[name="sweep-name"]').fill('ui-sweep');
    await page.screenshot({ path: join(shots, 'sweep-form.png') });
    await dialog.locator('.jp-mod-accept').click();
    // the sweep's dialog follows its trials until the sweep has ended
    const ended = page.locator('.jp-Dialog .aiwb-sweep [data-running="false"]');
    await ended.waitFor({ timeout: 240000 });
    results.sweep_trials = await page
      .locator('.jp-Dialog .aiwb-sweep-trial')
      .evaluateAll(nodes => nodes.map(n => n.dataset.trial));
    results.sweep_text = await page.locator('.jp-Dialog .aiwb-sweep').innerText();
    await page.screenshot({ path: join(shots, 'sweep.png') });
    await page.locator('.jp-Dialog .jp-mod-accept').click();
  });
}
// JupyterLab emits its news question once the app is restored (long before this point in `full` mode); the toast
// does not close by itself, so a prompt that was asked is still in the page here.
results.news_prompts = await page.getByText('official Jupyter news').count();
results.page_errors = errors;
console.log(JSON.stringify(results));
await context.close();
rmSync(profile, { recursive: true, force: true });
