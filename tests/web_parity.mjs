// Driven by tests/test_web_client.py: opens the demo page (clients/web/index.html) in headless
// Chromium through playwright-core, runs steps with the browser module there, and writes the answers.
//
//   node tests/web_parity.mjs REQUEST.json RESPONSE.json
//   REQUEST: {chromium, user_data_dir, page, steps: [...]}, each step one of
//     {mode: "predict", bundle, precision, texts_json, top_k} -> {labels, model_file, predictions, ids, seconds}
//     {mode: "code_points", bundle, tokenizers, prefix, suffix}  -> per tokenizer {lengths, ids} (flat, comma-separated)
//     {mode: "load_error", bundle}                  -> {error}
//     {mode: "demo", query, text, screenshot}       -> {state, label, bars, status}
//   texts_json is a JSON string, so that lone surrogates reach the page intact.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../clients/web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [requestFile, responseFile] = process.argv.slice(2);
const request = JSON.parse(fs.readFileSync(requestFile, 'utf-8'));

const ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

const context = await chromium.launchPersistentContext(request.user_data_dir, {
  executablePath: request.chromium, headless: true, args: ARGS, viewport: { width: 900, height: 640 },
});
const logs = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (msg) => logs.push(`[console.${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => logs.push(`[pageerror] ${err.message}`));
  const answers = [];
  for (const step of request.steps) answers.push(await run(page, step));
  fs.writeFileSync(responseFile, JSON.stringify({ answers, logs }));
} catch (err) {
  process.stderr.write(`${err.stack}\n${logs.join('\n')}\n`);
  process.exitCode = 1;
} finally {
  await context.close();
}

async function open(page, query = '') {
  await page.goto(`${request.page}${query}`);
  await page.waitForFunction(() => document.body.dataset.state !== 'loading', null, { timeout: 120_000 });
}

async function run(page, step) {
  if (step.mode === 'demo') {
    await open(page, step.query);
    if (step.text !== undefined) {
      await page.fill('#text', step.text); // the page classifies as one types
      await page.waitForFunction((text) => document.getElementById('label').dataset.text === text, step.text, { timeout: 60_000 });
    }
    const answer = await page.evaluate(() => ({
      state: document.body.dataset.state,
      status: document.getElementById('status').textContent,
      label: document.getElementById('label').dataset.label ?? null,
      bars: [...document.querySelectorAll('.bar')].map((b) => [b.dataset.label, Number(b.querySelector('.value').textContent)]),
    }));
    if (step.screenshot) await page.screenshot({ path: step.screenshot, fullPage: true });
    return answer;
  }
  await open(page, '?bundle=none/'); // the page's import map; the module is imported below
  return page.evaluate(async (step) => {
    const web = await import('./rnnonnx-web.js');
    if (step.mode === 'load_error') {
      try {
        await (await web.load(step.bundle)).release();
        return { error: null };
      } catch (err) {
        return { error: `${err.name}: ${err.message}` };
      }
    }
    const model = await web.load(step.bundle, { precision: step.precision ?? 'fp32' });
    try {
      if (step.mode === 'predict') {
        const texts = JSON.parse(step.texts_json);
        const started = performance.now();
        const predictions = await model.predict(texts, step.top_k === null ? {} : { topK: step.top_k });
        const seconds = (performance.now() - started) / 1000;
        return { labels: model.labels, model_file: model.modelFile, graph: model.graph, predictions, seconds, ids: texts.map((t) => model.encode(t)) };
      }
      if (step.mode === 'code_points') {
        // Every code point but the surrogates, each as its own text between step.prefix and step.suffix.
        const tokenizers = step.tokenizers.map((data) => (data === null ? model.tokenizer : new web.Tokenizer(data)));
        return tokenizers.map((tokenizer) => {
          const lengths = [];
          const ids = [];
          for (let cp = 0; cp < 0x110000; cp++) {
            if (cp >= 0xd800 && cp <= 0xdfff) continue;
            const encoded = tokenizer.encode(step.prefix + String.fromCodePoint(cp) + step.suffix);
            lengths.push(encoded.length);
            for (const id of encoded) ids.push(id);
          }
          return { lengths: lengths.join(','), ids: ids.join(',') }; // strings: far quicker to hand over than arrays
        });
      }
      throw new Error(`unknown mode ${step.mode}`);
    } finally {
      await model.release();
    }
  }, step);
}
