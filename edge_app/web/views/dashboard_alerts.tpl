%# The dashboard's recent alerts and the snapshot notice: in the page and in /api/admin/today.
  % if not alerts:
  <p class="empty">No alerts yet. An alert is raised when a student stays disengaged longer than the alert threshold (see <a href="/admin/settings">Settings</a>).</p>
  % else:
  <ul>
    % for a in alerts:
    <li>{{local_time(a['t'])}}: {{a['level']}}
    % if a['snapshot_path']:
      · <a href="/admin/alert/{{a['id']}}.jpg">snapshot</a>
    % end
    </li>
    % end
  </ul>
  % end
  % if snapshots_on or snapshots_stored:
  <p class="{{'error' if snapshots_on else 'hint'}}" id="snapshot-notice">{{'Snapshots are on: each alert stores a camera frame of the student. ' if snapshots_on else ''}}{{snapshots_stored}} snapshot{{'s' if snapshots_stored != 1 else ''}} stored: <a href="/admin/alerts">see and delete them</a>.</p>
  % end
