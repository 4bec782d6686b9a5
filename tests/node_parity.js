'use strict';
// Driven by tests/test_node_client.py: reads a request JSON file, writes a response JSON file.
//   node tests/node_parity.js request.json response.json
// Requests: {mode: "predict", bundle, graph, precision, threads, batch_size, texts}
//           {mode: "tokens", tokenizers: [tokenizer.json data], texts, paired}
//           {mode: "load", bundle, graph, precision}             (expected to fail: reports the error)
const fs = require('node:fs');
const path = require('node:path');
const rnnonnx = require(path.join(__dirname, '..', 'clients', 'node'));

async function main() {
  const [requestFile, responseFile] = process.argv.slice(2);
  const request = JSON.parse(fs.readFileSync(requestFile, 'utf8'));
  let response;
  if (request.mode === 'predict') {
    const model = await rnnonnx.load(request.bundle, {
      graph: request.graph, precision: request.precision, threads: request.threads, batchSize: request.batch_size,
    });
    const started = process.hrtime.bigint();
    const results = await model.predict(request.texts, request.options || {});
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    response = {
      graph: model.graph,
      model_file: path.basename(model.modelFile),
      labels: model.labels,
      probabilities: results.map((r) => model.labels.map((label) => r.probabilities[label])),
      predictions: results,
      predicted: results.map((r) => r.label),
      scores: results.map((r) => r.score),
      ids: request.texts.map((t) => model.encode(t)),
      seconds,
    };
    await model.release();
  } else if (request.mode === 'tokens') {
    // Every text through every tokenizer, or with `paired`, text i through tokenizer i only.
    response = request.tokenizers.map((data, i) => {
      const tokenizer = new rnnonnx.Tokenizer(data);
      return (request.paired ? [request.texts[i]] : request.texts).map((t) => tokenizer.tokens(t));
    });
  } else if (request.mode === 'load') {
    try {
      await rnnonnx.load(request.bundle, { graph: request.graph, precision: request.precision });
      response = { error: null };
    } catch (err) {
      response = { error: err.message, name: err.name };
    }
  } else {
    throw new Error(`unknown mode ${request.mode}`);
  }
  fs.writeFileSync(responseFile, JSON.stringify(response));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
