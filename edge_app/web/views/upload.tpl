% rebase('base.tpl', title=title)
% import time as _t
<section class="card">
  <h1>Analyse a photo</h1>
  <p class="hint">{{accepted}} The photo is analysed on this device and never sent anywhere. Only send photos of
    yourself, or of people who said yes: every face in it is analysed and kept with your photo.</p>
  <p class="hint" id="what-is-kept">{{kept}}</p>
  % if get('done'):
  <p class="ok" role="status" id="upload-done">{{done}}</p>
  % end
  % if error:
  % # which files are accepted helps with a refused file, not with a full disk or a deleted photo
  <p class="error" role="alert" id="upload-error">{{error}}{{(' ' + accepted) if get('about_the_file', True) else ''}}</p>
  % end
  <form method="post" action="/upload" enctype="multipart/form-data" class="row" id="upload-form" data-max-bytes="{{max_bytes}}" data-accepted="{{accepted}}">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <input type="hidden" name="attempt" value="{{get('attempt', '')}}">
    <div>
      <label for="image">Photo</label>
      % # as login.tpl: the refusal is read with the field, and the keyboard is on it to choose again
      % told = (' aria-describedby="upload-error" autofocus' + (' aria-invalid="true"' if get('about_the_file', True) else '')) if error else ''
      <input id="image" name="image" type="file" accept="image/jpeg,image/png,image/webp" required{{!told}}>
    </div>
    <button type="submit">Analyse</button>
  </form>
  <script src="/static/upload.js"></script>
</section>
<section class="card" id="your-photos">
  <h2>Your photos</h2>
  % if not history['rows']:
  <p class="empty">You have no photos stored. The ones you analyse are listed here.</p>
  % else:
  % if history['pages'] > 1:
  <p class="hint" id="history-count">Photos {{history['first']}} to {{history['last']}} of your {{history['total']}}, newest first. Open a photo to see its results or delete it.</p>
  % end
  <div class="table-wrap">
  <table id="history">
    <thead><tr><th scope="col">When <span class="hint" id="history-zone" title="this device's time zone">({{_t.strftime('%Z')}})</span></th><th scope="col">File</th><th scope="col">Faces</th><th scope="col">Engagement</th></tr></thead>
    <tbody>
    % for h in history['rows']:
      <tr><td><a href="/uploads/{{h['id']}}">{{local_time(h['created'], '%d %b %Y %H:%M')}}</a></td><td><a href="/uploads/{{h['id']}}">{{h['filename']}}</a></td><td>{{h['face_count']}}</td><td>{{h['levels'] or 'no face'}}</td></tr>
    % end
    </tbody>
  </table>
  </div>
  % if history['pages'] > 1:
  <nav class="pager" aria-label="Pages of your photos">
    % if history['page'] > 1:
    <a href="/upload?page={{history['page'] - 1}}#your-photos" rel="prev" id="history-newer">← Newer</a>
    % end
    <span>Page {{history['page']}} of {{history['pages']}}</span>
    % if history['page'] < history['pages']:
    <a href="/upload?page={{history['page'] + 1}}#your-photos" rel="next" id="history-older">Older →</a>
    % end
  </nav>
  % end
  <details id="delete-all">
    <summary>Delete all my photos</summary>
    <p class="hint">{{'Your photo' if history['total'] == 1 else 'All %d of your photos' % history['total']}}, the faces found and their results are removed from this device now. To delete one photo only, open it above.</p>
    <form method="post" action="/uploads/delete-all">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <button type="submit" class="danger" id="delete-all-button">{{'Delete it' if history['total'] == 1 else 'Delete all %d' % history['total']}} for good</button>
    </form>
  </details>
  % end
</section>
