% rebase('base.tpl', title=title)
<section class="card">
  <h1>Log</h1>
  <p><a href="/admin/log.csv" id="csv">Download CSV</a></p>
  % if not rows:
  <p class="empty">Nothing logged yet: live state changes and uploads appear here.</p>
  % else:
  <table id="log">
    <thead><tr><th>Time</th><th>Kind</th><th>User</th><th>Engagement</th><th>Emotion</th><th>Confidence</th></tr></thead>
    <tbody>
    % import time as _t
    % for r in rows:
      <tr><td>{{_t.strftime('%Y-%m-%d %H:%M:%S', _t.localtime(r['t']))}}</td><td>{{r['kind']}}</td><td>{{r['username'] or ''}}</td>
      <td>{{r['level']}}</td><td>{{r['emotion'] or ''}}</td><td>{{'%.0f%%' % (r['confidence'] * 100) if r['confidence'] is not None else ''}}</td></tr>
    % end
    </tbody>
  </table>
  % end
</section>
<section class="card">
  <h2>Model in use</h2>
  <p><code>{{manifest.model_path.name}}</code> · sha256 <code>{{manifest.sha256[:16]}}…</code></p>
</section>
