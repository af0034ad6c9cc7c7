// The demo's HTML (served at / by `kiln serve`); the script is dist/demo/app.js, served under /kiln/.
export const DEMO_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Kiln — image classification in the browser</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 760px; margin: 2em auto; padding: 0 1em; color: #222; }
  h1 { font-size: 1.4em; margin-bottom: 0.2em; }
  .meta { color: #555; font-size: 0.9em; margin: 0.2em 0; }
  #status.error { color: #b00020; }
  #drop { border: 2px dashed #999; border-radius: 8px; padding: 1.2em; text-align: center; margin: 1em 0; }
  #drop.over { border-color: #06c; background: #eef5ff; }
  .row { display: flex; gap: 1.5em; align-items: flex-start; }
  #preview { width: 224px; height: 224px; background: #eee; border-radius: 4px; flex: none; }
  table { border-collapse: collapse; flex: 1; }
  td { padding: 0.25em 0.5em; border-bottom: 1px solid #eee; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  td.barcell { width: 40%; }
  .bar { height: 0.8em; background: #4a8; border-radius: 2px; }
  #latency { font-weight: 600; margin-top: 0.6em; }
</style>
</head>
<body>
<h1>Kiln: image classification in the browser</h1>
<div class="meta" id="model">loading model…</div>
<div class="meta">backend: <span id="backend">…</span></div>
<div id="drop">Drop an image here, or <input type="file" id="file" accept="image/*"></div>
<div class="meta" id="status">loading…</div>
<div class="row">
  <canvas id="preview" width="224" height="224" title="the network's input: resized, center-cropped"></canvas>
  <div style="flex:1">
    <table><tbody id="results"></tbody></table>
    <div id="latency"></div>
  </div>
</div>
<script type="module" src="/kiln/demo/app.js"></script>
</body>
</html>
`;
