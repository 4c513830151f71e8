% rebase('base.tpl', title=title)
<section class="card">
  <h1>Model in use</h1>
  % if done:
  <p class="ok" role="status">{{done}}</p>
  % end
  % if error:
  <p class="error" role="alert">{{error}}</p>
  % end
  <dl class="facts" id="model-facts">
    <dt>File</dt><dd><code>{{manifest.model_path.name}}</code>{{' (%.2f MB)' % size_mb if size_mb is not None else ' (missing!)'}}</dd>
    <dt>Manifest</dt><dd><code>{{manifest.path}}</code></dd>
    <dt>sha256</dt><dd><code class="wrap" id="sha256">{{manifest.sha256}}</code></dd>
    <dt>Input</dt><dd>{{manifest.size[0]}}×{{manifest.size[1]}} grayscale</dd>
    <dt>Emotions</dt><dd>{{', '.join(manifest.labels)}}</dd>
    % for k, v in extra.items():
    <dt>{{k}}</dt><dd>{{v if not isinstance(v, (dict, list)) else repr(v)}}</dd>
    % end
  </dl>
  <h2>Metrics</h2>
  % if not manifest.metrics:
  <p class="empty">The manifest records no evaluation metrics for this model.</p>
  % else:
  <div class="table-wrap"><table id="metrics">
    % for k, v in manifest.metrics.items():
    <tr><th scope="row">{{k}}</th><td>{{('%.4g' % v) if isinstance(v, float) else (v if not isinstance(v, (dict, list)) else repr(v))}}</td></tr>
    % end
  </table></div>
  % end
</section>
<section class="card">
  <h2>Install a new model</h2>
  <p class="hint">Upload the int8 <code>.tflite</code> file and its manifest <code>.json</code>. The device checks both (sha256, labels, a test inference) before switching, and keeps the current model to roll back to.</p>
  <form method="post" action="/admin/model/install" enctype="multipart/form-data" id="install-model" class="stacked narrow-left">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <label for="model">Model file (.tflite)</label>
    <input id="model" name="model" type="file" accept=".tflite" required>
    <label for="manifest">Manifest (.json)</label>
    <input id="manifest" name="manifest" type="file" accept=".json,application/json" required>
    <button type="submit">Check and install</button>
  </form>
</section>
