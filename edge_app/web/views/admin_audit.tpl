% rebase('base.tpl', title=title)
% import time as _t
<section class="card">
  <h1>Audit log</h1>
  <p class="hint">What admins changed on this device: users, their data, settings and the model. Kept for at least a year.</p>
  % if not rows:
  <p class="empty" id="audit-empty">No admin has changed anything yet.</p>
  % else:
  <div class="table-wrap">
  <table id="audit">
    <thead><tr><th scope="col">When <span class="hint">({{_t.strftime('%Z')}})</span></th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Details</th></tr></thead>
    <tbody>
    % for r in rows:
      <tr><td>{{local_time(r['t'])}}</td><td>{{r['actor']}}</td>
      <td>{{r['action']}} <strong>{{r['target']}}</strong></td><td>{{r['detail']}}</td></tr>
    % end
    </tbody>
  </table>
  </div>
  <nav class="pager" aria-label="Pages">
    % if page_no > 1:
    <a href="/admin/audit?page={{page_no - 1}}" rel="prev">← Newer</a>
    % end
    <span>Page {{page_no}} of {{pages}}</span>
    % if page_no < pages:
    <a href="/admin/audit?page={{page_no + 1}}" rel="next">Older →</a>
    % end
  </nav>
  % end
</section>
