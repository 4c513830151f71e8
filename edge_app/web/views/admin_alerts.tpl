% rebase('base.tpl', title=title)
% import time as _t
<section class="card">
  <h1>Alerts</h1>
  % if done:
  <p class="ok" role="status" id="alerts-done">{{done}}</p>
  % end
  % if error:
  <p class="error" role="alert" id="alerts-error">{{error}}</p>
  % end
  <p class="hint">An alert is raised (and the buzzer sounds) when a student stays disengaged longer than the alert
    threshold. Alerts are kept for {{retention_days}} days (store.retention_days).</p>
  % if storing:
  <p class="error" id="snapshots-on"><strong>Snapshots are on:</strong> each alert stores one whole camera frame
    of the student on this device, kept {{retention_days}} days unless deleted here. Only admins can see them. Turn
    it off under <a href="/admin/settings">Settings</a> ("Snapshot on alert").</p>
  % else:
  <p class="hint" id="snapshots-off">Snapshots are off: no camera frame is stored when an alert fires.</p>
  % end
  % if stored:
  <form method="post" action="/admin/alerts/delete-snapshots" class="inline">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <p id="snapshots-stored">{{stored}} snapshot{{'s are' if stored != 1 else ' is'}} stored.
      <button type="submit" class="danger" id="delete-all-snapshots">Delete all {{stored}} snapshot{{'s' if stored != 1 else ''}}</button></p>
  </form>
  % end
  % if not rows:
  <p class="empty" id="alerts-empty">No alerts kept.</p>
  % else:
  <div class="table-wrap">
  <table id="alerts">
    <thead><tr><th scope="col">When <span class="hint">({{_t.strftime('%Z')}})</span></th><th scope="col">Level</th><th scope="col">Snapshot</th></tr></thead>
    <tbody>
    % for r in rows:
      <tr><td>{{local_time(r['t'])}}</td><td>{{r['level']}}</td>
      <td>
      % if r['snapshot_path']:
        <a href="/admin/alert/{{r['id']}}.jpg">view</a>
        <form method="post" action="/admin/alerts/delete-snapshots" class="inline">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <input type="hidden" name="alert" value="{{r['id']}}">
          <input type="hidden" name="page" value="{{page_no}}">
          <button type="submit" class="danger" aria-label="Delete the snapshot of the alert at {{local_time(r['t'])}}">delete</button>
        </form>
      % else:
        <span class="hint">none</span>
      % end
      </td></tr>
    % end
    </tbody>
  </table>
  </div>
  <nav class="pager" aria-label="Pages">
    % if page_no > 1:
    <a href="/admin/alerts?page={{page_no - 1}}" rel="prev">← Newer</a>
    % end
    <span>Page {{page_no}} of {{pages}}</span>
    % if page_no < pages:
    <a href="/admin/alerts?page={{page_no + 1}}" rel="next">Older →</a>
    % end
  </nav>
  % end
</section>
