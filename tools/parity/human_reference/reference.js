// Runs the ORIGINAL @vladmandic/human graph models (TF.js, wasm backend) and prints their outputs as JSON.
// Driven by make_fixture.py (which installs the modules under /tmp and sets NODE_PATH):
//   node reference.js job.json
// job.json: {"models": {name: model.json path}, "items": [{"name", "path" (raw uint8 RGB, HWC), "height", "width",
//            "nets": [...]}]}. Each net gets human's own preprocessing of the item (src/gear/emotion.ts,
// src/gear/ssrnet-gender.ts, src/face/facemeshutil.ts cutAndResize, src/face/blazeface.ts getBoxes).
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');

const GREY = [0.2989, 0.5870, 0.1140];

async function loadGraph(jsonPath) {
  const spec = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
  const group = spec.weightsManifest[0];
  const data = fs.readFileSync(path.join(path.dirname(jsonPath), group.paths[0]));
  const buffer = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  return tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: spec.modelTopology, weightSpecs: group.weights, weightData: buffer, format: spec.format,
    generatedBy: spec.generatedBy, convertedBy: spec.convertedBy, signature: spec.signature,
    userDefinedMetadata: spec.userDefinedMetadata,
  }));
}

function readRgb(item) {
  const data = fs.readFileSync(item.path);
  if (data.length !== item.height * item.width * 3) throw new Error(`${item.path}: size mismatch`);
  return tf.tensor4d(Float32Array.from(data), [1, item.height, item.width, 3], 'float32');
}

const run = {
  // human: resizeBilinear(image/255, [64, 64], false), grey, (g - 0.5) * 2
  grey64: (model, img) => tf.tidy(() => {
    const resized = tf.image.resizeBilinear(tf.div(img, 255), [64, 64], false);
    const grey = tf.sum(tf.mul(resized, tf.tensor1d(GREY)), 3, true);
    return [model.execute(tf.mul(tf.sub(grey, 0.5), 2))];
  }),
  // human: cropAndResize(image, [whole box], 192 x 192) / 255 -> [faceflag, contours, mesh]
  mesh: (model, img) => tf.tidy(() => {
    const crop = tf.div(tf.image.cropAndResize(img, [[0, 0, 1, 1]], [0], [192, 192]), 255);
    const out = model.execute(crop);
    return [out.find((t) => t.shape[1] === 1404), out.find((t) => t.shape[1] === 1)];
  }),
  // human: resizeBilinear(image, [256, 256]) / 127.5 - 1; outputs re-assembled as human does: [896, 17]
  detector: (model, img) => tf.tidy(() => {
    const x = tf.sub(tf.div(tf.image.resizeBilinear(img, [256, 256]), 127.5), 1);
    const sorted = model.execute(x).sort((a, b) => a.size - b.size);
    const c384 = tf.concat([sorted[0], sorted[2]], 2);
    const c512 = tf.concat([sorted[1], sorted[3]], 2);
    return [tf.squeeze(tf.concat([c512, c384], 1), [0])];
  }),
};

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const wasmDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  wasm.setWasmPaths(`${wasmDir}/`);
  await tf.setBackend('wasm');
  await tf.ready();
  const models = {};
  for (const [name, file] of Object.entries(job.models)) models[name] = await loadGraph(file);
  const result = {};
  for (const item of job.items) {
    const img = readRgb(item);
    result[item.name] = {};
    for (const net of item.nets) {
      const kind = { emotion: 'grey64', gender: 'grey64', facemesh: 'mesh', blazeface: 'detector' }[net];
      const outs = run[kind](models[net], img);
      result[item.name][net] = outs.map((t) => Array.from(t.dataSync()));
      tf.dispose(outs);
    }
    img.dispose();
  }
  process.stdout.write(JSON.stringify({ versions: { tfjs: tf.version_core, backend: tf.getBackend() }, result }));
}

main().catch((e) => { console.error(e); process.exit(1); });
