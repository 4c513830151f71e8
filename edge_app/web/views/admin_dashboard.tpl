% rebase('base.tpl', title=title)
% import time as _t
<section class="card">
  <h1>Today</h1>
  % if clock_unset:
  <p class="error" role="alert" id="clock-unset"><strong>Times may be wrong:</strong> no time server has set this
    device's clock since it started.
    % if clock_trusted:
    Old records are deleted, and quiet hours kept, by its own clock (store.trust_device_clock).
    % else:
    Until one has, nothing past the retention period is deleted (a Raspberry Pi has no battery clock, and a
    clock days ahead would delete today's records; students' pages say so), and with quiet hours set the
    buzzer stays silent.
    % end
    To fix it, {{clock_help}}.
    % if not clock_trusted:
    A device whose clock keeps time by itself (a Jetson, a Pi 5 with its clock battery) on a network with no
    time server: set store.trust_device_clock = true in its config file once its date is right.
    % end
    </p>
  % end
  % if health and health.store != 'ok':
  <p class="error" role="alert" id="store-warning"><strong>The live state is not being recorded:</strong>
    % if health.store == 'disk full':
    the device's disk is nearly full ({{health.store_error}}). State changes, minutes and alerts wait in memory
    (the oldest are lost once too many wait) and uploads are refused until there is room: delete old data on the <a href="/admin/users">Users page</a> or
    lower Keep data for (days) in <a href="/admin/settings">Settings</a>.</p>
    % else:
    the database cannot be written ({{health.store}}: {{health.store_error}}). The service's journal says more.</p>
    % end
  % end
  <div class="tiles" id="today-tiles" data-day="{{day}}">
    <div class="tile"><span class="label">Engaged share</span><strong data-tile id="engaged-share">{{tiles['engaged-share']}}</strong><span class="hint">of live time tracked</span></div>
    <div class="tile"><span class="label">Time absent</span><strong data-tile id="absent">{{tiles['absent']}}</strong><span class="hint">hours:minutes</span></div>
    <div class="tile"><span class="label">Alerts raised</span><strong data-tile id="alerts">{{tiles['alerts']}}</strong><span class="hint">buzzer alerts</span></div>
    <div class="tile"><span class="label">Photos analysed</span><strong data-tile id="uploads">{{tiles['uploads']}}</strong><span class="hint">uploads today</span></div>
    <div class="tile"><span class="label">Now</span><strong class="small" id="now" data-live-state data-group="{{state.group if state else ''}}">{{state.level if state else 'no camera loop'}}</strong><span class="sr-only" role="status" data-announce-state></span><span class="hint">{{!'<a href="/glance">desk view</a>' if state else ''}}</span></div>
  </div>
  % if today['total_s'] == 0:
  <p class="empty">No live time recorded today yet: the figures fill in minute by minute while the camera loop runs.</p>
  % else:
  <div class="stack" role="img" aria-label="{{bar_words}}">
    % for g in groups:
    % if g in widths:
    <span class="seg {{g.css_class}} w{{widths[g]}}" title="{{g}}: {{'%.0f' % (today['seconds'][g] / 60)}} min"></span>
    % end
    % end
  </div>
  % end
</section>
<section class="card">
  <h2>Last 14 days <span class="hint">(minutes per day)</span></h2>
  {{!chart}}
  <ul class="legend" aria-hidden="true">
    % for g in groups:
    <li><span class="swatch {{g.css_class}}"></span>{{g}}</li>
    % end
  </ul>
  <details class="as-table" id="days-table">
    <summary>The same as a table</summary>
    <div class="table-wrap">
    <table class="numbers">
      <caption class="sr-only">Minutes per engagement level per day, last {{len(days)}} days</caption>
      <thead><tr><th scope="col">Day</th>
        % for g in groups:
        <th scope="col">{{g}}</th>
        % end
      </tr></thead>
      <tbody>
      % for d in days:
      <tr><th scope="row">{{d['day'].strftime('%a %d %b')}}</th>
        % for g in groups:
        <td>{{'%.0f' % (d['seconds'].get(g, 0) / 60)}}</td>
        % end
      </tr>
      % end
      </tbody>
    </table>
    </div>
  </details>
  % if not any(d['total_s'] for d in days):
  <p class="empty">No live time recorded in the last 14 days.</p>
  % end
</section>
<section class="card">
  <h2>Recent alerts</h2>
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
  <p><a href="/admin/alerts">All alerts</a> · <a href="/admin/log">Open the full log</a> · <a href="/admin/users">Students</a></p>
</section>
<script src="/static/dashboard.js"></script>
