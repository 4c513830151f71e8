% rebase('base.tpl', title=title)
<section class="card">
  <h1>Analyse a photo</h1>
  <p class="hint">JPEG, PNG or WebP. The photo is analysed on this device and never sent anywhere.</p>
  % if error:
  <p class="error" role="alert" id="upload-error">{{error}}</p>
  % end
  <form method="post" action="/upload" enctype="multipart/form-data" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <label for="image">Photo</label>
    <input id="image" name="image" type="file" accept="image/jpeg,image/png,image/webp" required>
    <button type="submit">Analyse</button>
  </form>
</section>
% if result is not None:
<section class="card results">
  <h2>Results</h2>
  <div class="split">
    <img src="{{result['preview']}}" alt="Your photo with the faces found marked" class="preview">
    % if not result['faces']:
    <p class="empty" id="no-face">No face was found. Use a well-lit photo where the face looks at the camera and fills at least a twentieth of the width.</p>
    % else:
    <table id="faces">
      <thead><tr><th>#</th><th>Emotion</th><th>Confidence</th><th>Engagement</th><th>Box (x, y, w, h)</th></tr></thead>
      <tbody>
      % for i, f in enumerate(result['faces'], 1):
        <tr>
          <td>{{i}}</td>
          <td><details><summary>{{f['emotion']}}</summary>
            <ul class="probs">
            % for label, p in sorted(f['probabilities'].items(), key=lambda kv: -kv[1]):
              <li>{{label}}: {{'%.1f' % (p * 100)}}%</li>
            % end
            </ul></details></td>
          <td>{{'%.0f' % (f['confidence'] * 100)}}%</td>
          <td>{{f['engagement']}}</td>
          <td>{{', '.join(str(v) for v in f['box'])}}</td>
        </tr>
      % end
      </tbody>
    </table>
    % end
  </div>
</section>
% end
