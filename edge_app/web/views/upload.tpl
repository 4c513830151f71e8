% rebase('base.tpl', title=title)
% import time as _t
<section class="card">
  <h1>Analyse a photo</h1>
  <p class="hint">{{accepted}} The photo is analysed on this device and never sent anywhere.</p>
  % if get('done'):
  <p class="ok" role="status" id="upload-done">{{done}}</p>
  % end
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
% include('result.tpl', result=result)
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
      <tr><td><a href="/uploads/{{h['id']}}">{{_t.strftime('%d %b %H:%M', _t.localtime(h['created']))}}</a></td><td><a href="/uploads/{{h['id']}}">{{h['filename']}}</a></td><td>{{h['face_count']}}</td><td>{{h['levels'] or 'no face'}}</td></tr>
    % end
    </tbody>
  </table>
  </div>
  % end
</section>
