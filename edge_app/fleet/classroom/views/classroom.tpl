% rebase('layout.tpl', title=title)
<div class="classroom">
  <section aria-labelledby="counts-h" class="counts-bar">
    <h1 id="counts-h" class="sr-only">Desks per level</h1>
    <ul id="counts" class="counts">
      % for level, n in snapshot['counts'].items():
      <li class="count lvl-{{level.lower().replace(' ', '-') if level in known else 'other'}}"><span class="n">{{n}}</span> {{level}}</li>
      % end
    </ul>
    <p class="conn" id="class-recent" title="Of the time students were at their desks: an empty seat&#8217;s minutes &#8220;Absent&#8221; are left out, as on each tile"></p>
    <p class="conn" id="conn" role="status">Connecting…</p>
  </section>
  <section aria-labelledby="alerts-h" class="alerts card">
    <div class="head-row">
      <h2 id="alerts-h">Needs attention</h2>
      <label class="threshold" for="threshold">Alert after
        <input id="threshold" type="text" value="2" inputmode="decimal" size="5" autocomplete="off"
               aria-describedby="threshold-note"> min
        "Not engaged" or "Distracted"</label>
    </div>
    <p id="threshold-note" class="threshold-note" hidden></p>
    <ul id="alerts"><li class="none">No desk right now.</li></ul>
    <p id="alerts-said" class="sr-only" role="status"></p>
  </section>
  <section aria-labelledby="desks-h">
    <h2 id="desks-h" class="sr-only">Desks</h2>
    <p class="seat-order"><label><input id="seat-order" type="checkbox"> Seat order: each desk keeps its place, by
      desk name</label> <span class="hint">(off: the desks that need you first)</span></p>
    <p class="remove-offline" id="remove-offline-row" hidden><button type="button" id="remove-offline" class="secondary"
      data-csrf="{{csrf}}">Remove the offline desks</button> <span class="hint">(the last class&#8217;s desks, an
      old name: each comes back when it is heard again)</span></p>
    <p id="remove-offline-result" class="remove-offline-result" role="status"></p>
    <ul id="desks" class="desks" aria-live="off">
      % if not snapshot['desks']:
      <li class="empty">No desk has reported yet. Devices appear here once they publish to the broker.</li>
      % end
    </ul>
  </section>
  % # each state in the colour and marking its count and tiles have (levels.KEY): "Present" and "Checking" were explained nowhere
  % from edge_app.fleet.classroom.levels import KEY
  <details class="card key" id="key">
    <summary>What each state means</summary>
    <dl class="key-list">
      % for level, meaning in KEY:
      <dt><span class="chip lvl-{{level.lower().replace(' ', '-') if level in known else 'other'}}">{{level}}</span></dt>
      <dd>{{meaning}}</dd>
      % end
    </dl>
  </details>
  <details class="card expected-desks">
    <summary>Desks in this room</summary>
    <p class="hint">The device IDs of this room's desks (each desk's <code>mqtt.device_id</code>, as its tile names it
      before it sends its name). Each has a tile from then on, even before it is heard, so a desk that does not come up
      is seen missing: &#8220;Offline&#8221;, &#8220;not heard yet&#8221;.</p>
    % # the page's forms are classroom.js's (JSON, with the CSRF header); without it they post to a page that says so:
    % # with no method they were GETs, a new instructor's password put in the address, the history and the logs
    <form id="expected-form" method="post" action="/needs-javascript" data-csrf="{{csrf}}">
      <label for="expected-desks">Device IDs, one per line or separated by commas</label>
      <textarea id="expected-desks" name="desks" rows="4" spellcheck="false" autocomplete="off"
        data-version="{{expected_version}}">{{'\n'.join(expected)}}</textarea>
      <button type="submit">Save the list</button>
      <p id="expected-result" role="status"></p>
    </form>
  </details>
  % if user.role == 'admin':
  <details class="card admin-tools">
    <summary>Instructors</summary>
    <ul id="instructors" class="instructors" aria-label="Instructor accounts"></ul>
    <p id="instructors-result" role="status" tabindex="-1"></p>
    <h3>Add an instructor</h3>
    <form id="add-instructor" class="row" method="post" action="/needs-javascript" data-csrf="{{csrf}}">
      <label>User name <input name="username" required minlength="2" maxlength="32" autocomplete="off"></label>
      <label>Password <input name="password" type="password" required minlength="8" autocomplete="new-password"></label>
      <label><input name="temporary" type="checkbox" checked> They choose their own at the first log-in</label>
      <label id="confirm-mine" hidden>Your own password <input name="mine" type="password" autocomplete="current-password"></label>
      <button type="submit">Add</button>
      <p id="add-result" role="status"></p>
    </form>
  </details>
  % end
</div>
<script src="/static/classroom.js?v={{build}}" data-build="{{build}}"></script>
