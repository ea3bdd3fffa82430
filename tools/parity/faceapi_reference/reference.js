// Runs the ORIGINAL face-api 1.7.15 networks on raw RGB crops and prints their outputs as JSON.
// Driven by make_fixture.py (which installs the modules under /tmp and sets NODE_PATH):
//   node reference.js detect job.json   -> SSD detections + the full original pipeline per photo
//   node reference.js run job.json      -> the four nets on each crop, exactly as given
// job.json: {"model_dir": ..., "items": [{"name", "path" (raw uint8 RGB, HWC), "height", "width"}]}
const fs = require('fs');
const path = require('path');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const { tf } = faceapi;

function readRgb(item) {
  const data = fs.readFileSync(item.path);
  if (data.length !== item.height * item.width * 3) throw new Error(`${item.path}: size mismatch`);
  // SPEC: feed int32 HWC; face-api casts to float32 itself
  return tf.tensor3d(Int32Array.from(data), [item.height, item.width, 3], 'int32');
}

async function setup(modelDir) {
  const wasmDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  tf.setWasmPaths(`${wasmDir}/`);
  await tf.setBackend('wasm');
  await tf.ready();
  for (const net of ['ssdMobilenetv1', 'faceLandmark68Net', 'faceExpressionNet', 'ageGenderNet', 'faceRecognitionNet']) {
    await faceapi.nets[net].loadFromDisk(modelDir);
  }
}

async function detect(items) {
  const out = {};
  for (const item of items) {
    const img = readRgb(item);
    const res = await faceapi.detectAllFaces(img, new faceapi.SsdMobilenetv1Options({ minConfidence: 0.5 }))
      .withFaceLandmarks().withFaceExpressions().withAgeAndGender();
    out[item.name] = res.map((r) => ({
      score: r.detection.score,
      box: [r.detection.box.x, r.detection.box.y, r.detection.box.width, r.detection.box.height],
      expressions: faceapi.FACE_EXPRESSION_LABELS.map((k) => r.expressions[k]),
      age: r.age,
      male: r.gender === 'male' ? r.genderProbability : 1 - r.genderProbability,
    }));
    img.dispose();
  }
  return out;
}

async function run(items) {
  const { nets } = faceapi;
  const out = {};
  for (const item of items) {
    const img = readRgb(item);
    const input = await faceapi.toNetInput(img);
    const raw = nets.faceLandmark68Net.runNet(input); // interleaved x, y of the padded square
    const lm = await nets.faceLandmark68Net.forward(img); // relative to the unpadded crop
    const expr = await nets.faceExpressionNet.forward(img);
    const ag = await nets.ageGenderNet.forward(img);
    const desc = await nets.faceRecognitionNet.forward(img);
    out[item.name] = {
      landmarks_raw: Array.from(raw.dataSync()),
      landmarks: Array.from(lm.dataSync()),
      expression: Array.from(expr.dataSync()),
      age: ag.age.dataSync()[0],
      gender: Array.from(ag.gender.dataSync()),
      descriptor: Array.from(desc.dataSync()),
    };
    tf.dispose([img, raw, lm, expr, ag.age, ag.gender, desc]);
  }
  return out;
}

async function main() {
  const [mode, jobFile] = process.argv.slice(2);
  const job = JSON.parse(fs.readFileSync(jobFile, 'utf8'));
  await setup(job.model_dir);
  const result = mode === 'detect' ? await detect(job.items) : await run(job.items);
  const versions = { faceapi: faceapi.version, tfjs: tf.version_core, backend: tf.getBackend() };
  process.stdout.write(JSON.stringify({ versions, result }));
}

main().catch((e) => { console.error(e); process.exit(1); });
