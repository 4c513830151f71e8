% rebase('base.tpl', title=title)
% import time as _t
% def pct(v):
%   return '%.1f%%' % (v * 100) if isinstance(v, (int, float)) else '–'
% end
<section class="card">
  <h1>Model in use</h1>
  % if done:
  <p class="ok" role="status" id="model-done">{{done}}</p>
  % end
  % if error:
  <p class="error" role="alert" id="model-error">{{error}}</p>
  % end
  % if info:
  <div class="tiles" id="model-headline">
    <div class="tile"><span class="label">Accuracy ({{info['split'] or 'test'}} set)</span><strong id="accuracy">{{pct(info['accuracy'])}}</strong></div>
    <div class="tile"><span class="label">Macro F1 (all emotions alike)</span><strong>{{pct(info['macro_f1'])}}</strong></div>
    <div class="tile"><span class="label">Test faces</span><strong>{{'{:,}'.format(info['images']) if isinstance(info['images'], int) else '–'}}</strong></div>
    % if speed:
    <div class="tile"><span class="label">Time per face (measured here)</span><strong id="speed-measured">{{'%.2f ms' % speed['ms']}}</strong></div>
    % elif info['latency_ms']:
    <div class="tile"><span class="label">Time per inference (its manifest's claim)</span><strong id="speed-claimed">{{'%.2f ms' % info['latency_ms']}}</strong></div>
    % end
  </div>
  <p class="hint">Scored on FER+ faces the model never trained on, counted by the {{info['rule']}}{{', evaluated ' + info['evaluated'][:10] if info['evaluated'] else ''}}.</p>
  % end
  <dl class="facts" id="model-facts">
    <dt>File</dt><dd><code>{{manifest.model_path.name}}</code>{{' (%.2f MB)' % size_mb if size_mb is not None else ' (missing!)'}}</dd>
    % if manifest.raw.get('version'):
    <dt>Version</dt><dd id="model-version">{{manifest.raw['version']}}</dd>
    % end
    % if manifest.raw.get('installed'):
    <dt>Installed</dt><dd>{{manifest.raw['installed']}}</dd>
    % end
    % if speed:
    <dt>Time per face</dt><dd id="model-speed">{{'%.2f ms' % speed['ms']}} measured on this device at its install{{' (%d inferences per face)' % speed['views'] if speed['views'] and speed['views'] > 1 else ''}}, one thread{{'; %s, running then, took %.2f ms' % (speed['compared_with'], speed['its_ms']) if speed['compared_with'] and speed['its_ms'] is not None else ''}}</dd>
    % end
    <dt>sha256</dt><dd><code class="wrap" id="sha256">{{manifest.sha256}}</code></dd>
    <dt>Input</dt><dd>{{manifest.size[0]}}×{{manifest.size[1]}} grayscale face</dd>
    <dt>Emotions</dt><dd>{{', '.join(manifest.labels)}}</dd>
    <dt>Manifest</dt><dd><code class="wrap">{{manifest.path}}</code></dd>
  </dl>
</section>
<section class="card">
  <h2>How well it recognises each emotion</h2>
  % if not info:
  <p class="empty" id="no-metrics">The manifest records no evaluation of this model.</p>
  % else:
  % if info['classes']:
  <div class="table-wrap">
  <table id="per-class" class="numbers">
    <caption class="sr-only">Per-emotion scores on the test set</caption>
    <thead><tr><th scope="col">Emotion</th><th scope="col">Recall</th><th scope="col">Precision</th><th scope="col">F1</th><th scope="col">Test faces</th></tr></thead>
    <tbody>
    % for c in info['classes']:
      <tr><th scope="row">{{c['label']}}</th><td>{{pct(c['recall'])}}</td><td>{{pct(c['precision'])}}</td><td>{{pct(c['f1'])}}</td><td>{{c['support'] if c['support'] is not None else '–'}}</td></tr>
    % end
    </tbody>
  </table>
  </div>
  <p class="hint">Recall: of the faces that showed this emotion, the share the model named correctly.</p>
  % end
  % if info['confusion']:
  <h3>Confusion matrix</h3>
  <div class="table-wrap">
  <table id="confusion" class="confusion">
    <caption class="sr-only">Rows: the emotion the face showed; columns: what the model said</caption>
    <thead><tr><th scope="col"><span class="sr-only">Shown, then said</span></th>
    % for label in manifest.labels:
      <th scope="col"><abbr title="{{label}}">{{label[:3]}}</abbr></th>
    % end
    </tr></thead>
    <tbody>
    % for i, row in enumerate(info['confusion']):
      % total = sum(row) or 1
      <tr><th scope="row"><abbr title="{{manifest.labels[i]}}">{{manifest.labels[i][:3]}}</abbr></th>
      % for j, n in enumerate(row):
        <td class="h{{min(5, int(n * 6 / total))}}{{' diag' if i == j else ''}}">{{n}}</td>
      % end
      </tr>
    % end
    </tbody>
  </table>
  </div>
  <p class="hint">Emotions by their first three letters (neu = neutral, hap = happiness, and so on). Each row is the emotion the face showed; the darker the cell, the larger its share of that row. The diagonal is what the model got right.</p>
  % end
  % end
  % if plots:
  <div class="plots" id="plots">
    % for key, alt in (('confusion', 'Confusion matrix of the model on the test set, as shipped'), ('curves', 'Training and validation curves of the run that made this model')):
    % if key in plots:
    <figure><img src="/admin/model/plot/{{key}}" alt="{{alt}}" class="plot" loading="lazy"><figcaption class="hint">{{alt}}</figcaption></figure>
    % end
    % end
  </div>
  % end
</section>
<section class="card">
  <h2>Roll back</h2>
  % if pinned:
  <p class="hint">The config's <code>model.manifest</code> pins this model, so installs and roll-backs here do not change what runs.</p>
  % end
  % if previous and previous.get('damaged'):
  <p class="error" id="previous-damaged">The previous model, <code>{{previous['model']}}</code> (sha256 {{previous['sha256'][:12]}}), cannot run: {{previous['damaged']}}. Rolling back cannot mend it; to run another model, install a good one below.</p>
  % elif previous:
  % # the version (or, without one, the manifest's digest): one model file may come with two manifests
  % named = previous['model'] + (' (version ' + previous['version'] + ')' if previous.get('version') else ' (manifest ' + previous['manifest'] + ')')
  <p>The previous model is <code>{{previous['model']}}</code> ({{'version ' + previous['version'] + ', ' if previous.get('version') else ''}}sha256 {{previous['sha256'][:12]}}, manifest {{previous['manifest']}}{{', installed ' + previous['installed'] if previous['installed'] else ''}}). Rolling back runs it again at once; the current model becomes the one to roll back to.</p>
  <form method="post" action="/admin/model/rollback" id="rollback-model">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button type="submit" class="secondary">Roll back to {{named}}</button>
  </form>
  % else:
  <p class="empty" id="no-previous">There is no previous model to roll back to: one appears after the first install.</p>
  % end
  <h3>History</h3>
  % if not history:
  <p class="empty" id="history-empty">No model has been installed on this device yet: it runs the shipped model.</p>
  % else:
  <div class="table-wrap">
  <table id="model-history">
    <thead><tr><th scope="col">When <span class="hint">({{_t.strftime('%Z')}})</span></th><th scope="col">What</th><th scope="col">Accuracy</th><th scope="col">Time per face</th><th scope="col">By</th></tr></thead>
    <tbody>
    % for h in history:
      <tr><td>{{local_time(h['t'], '%Y-%m-%d %H:%M') if isinstance(h.get('t'), (int, float)) else ''}}</td>
      <td>{{h.get('action', '')}} <code>{{h.get('model') or ''}}</code>{{' (' + str(h['version']) + ')' if h.get('version') else ''}} <span class="hint">{{str(h.get('sha256', ''))[:12]}}{{', manifest ' + str(h['manifest']) if h.get('manifest') else ''}}</span></td>
      <td>{{pct(h.get('accuracy'))}}</td><td>{{'%.2f ms' % h['ms_per_face'] if isinstance(h.get('ms_per_face'), (int, float)) and not isinstance(h.get('ms_per_face'), bool) else '–'}}</td><td>{{h.get('by') or '–'}}</td></tr>
    % end
    </tbody>
  </table>
  </div>
  % end
</section>
<section class="card">
  <h2>Install a new model</h2>
  <p class="hint">Upload the model's <code>.tflite</code> file (int8, as training's quantize step makes it, or float) and its manifest <code>.json</code>. The device checks both (sha256, labels, a test inference) before switching, and keeps the current model to roll back to.</p>
  <form method="post" action="/admin/model/install" enctype="multipart/form-data" id="install-model" class="stacked narrow-left">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <label for="model">Model file (.tflite)</label>
    <input id="model" name="model" type="file" accept=".tflite" required>
    <label for="manifest">Manifest (.json)</label>
    <input id="manifest" name="manifest" type="file" accept=".json,application/json" required>
    <button type="submit">Check and install</button>
  </form>
</section>
