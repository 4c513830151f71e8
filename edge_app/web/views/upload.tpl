% rebase('base.tpl', title=title)
% import time as _t
<section class="card">
  <h1>Analyse a photo</h1>
  <p class="hint">{{accepted}} The photo is analysed on this device and never sent anywhere.</p>
  % if error:
  <p class="error" role="alert" id="upload-error">{{error}} {{accepted}}</p>
  % end
  <form method="post" action="/upload" enctype="multipart/form-data" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <div>
      <label for="image">Photo</label>
      <input id="image" name="image" type="file" accept="image/jpeg,image/png,image/webp" required>
    </div>
    <button type="submit">Analyse</button>
  </form>
</section>
% if result is not None:
<section class="card results" id="results">
  <h2>Results for {{result['filename']}}</h2>
  <p class="hint">{{result['width']}} × {{result['height']}} pixels · {{len(result['faces'])}} face{{'' if len(result['faces']) == 1 else 's'}} found</p>
  <div class="split">
    <img src="{{result['preview']}}" alt="Your photo with the faces found marked and numbered" class="preview">
    % if not result['faces']:
    <p class="empty" id="no-face">No face was found in this photo. Use a well-lit photo where the face looks at the camera and fills at least a twentieth of its width.</p>
    % else:
    <div class="table-wrap">
    <table id="faces">
      <caption class="sr-only">Faces found, one row each</caption>
      <thead><tr><th scope="col">#</th><th scope="col">Face</th><th scope="col">Emotion</th><th scope="col">Confidence</th><th scope="col">Engagement</th></tr></thead>
      <tbody>
      % for i, f in enumerate(result['faces'], 1):
        % group = f['engagement'].split(' - ')[0]
        <tr class="{{'uncertain' if f.get('uncertain') else ''}}">
          <td>{{i}}</td>
          <td><img class="face" src="{{result['thumbs'][i - 1]}}" alt="Face {{i}}" width="64" height="64"></td>
          <td><details><summary>{{('unsure (maybe ' + f['emotion'] + ')') if f.get('uncertain') else f['emotion']}}</summary>
            <ul class="probs" aria-label="All emotion probabilities for face {{i}}">
            % for label, p in sorted(f['probabilities'].items(), key=lambda kv: -kv[1]):
              <li><span class="bar"><span class="fill w{{int(round(p * 20)) * 5}}"></span></span>{{label}} {{'%.1f' % (p * 100)}}%</li>
            % end
            </ul></details></td>
          <td>{{'%.0f' % (f['confidence'] * 100)}}%</td>
          <td><span class="pill g-{{group.replace(' ', '-').lower()}}">{{f['engagement']}}</span>
            % if f.get('uncertain'):
            <span class="hint">the emotion is too unsure to count</span>
            % end
          </td>
        </tr>
      % end
      </tbody>
    </table>
    </div>
    % end
  </div>
</section>
% end
<section class="card">
  <h2>Your recent photos</h2>
  % if not history:
  <p class="empty">You have not analysed any photos yet. Your results will be listed here.</p>
  % else:
  <div class="table-wrap">
  <table id="history">
    <thead><tr><th scope="col">When</th><th scope="col">File</th><th scope="col">Faces</th><th scope="col">Engagement</th></tr></thead>
    <tbody>
    % for h in history:
      <tr><td>{{_t.strftime('%d %b %H:%M', _t.localtime(h['created']))}}</td><td>{{h['filename']}}</td><td>{{h['face_count']}}</td><td>{{h['levels'] or 'no face'}}</td></tr>
    % end
    </tbody>
  </table>
  </div>
  % end
</section>
