% rebase('base.tpl', title=title)
% import time as _t
% # a row's source in the filter's words (short), not the stored "live"/"upload"
% source_words = {'live': 'Live', 'upload': 'Upload'}
<section class="card">
  <h1>Log</h1>
  <form method="get" action="/admin/log" class="filters" id="filters">
    <div><label for="f-user">User</label>
      <select id="f-user" name="user"><option value="">Anyone</option>
      % for u in users:
        <option value="{{u}}" {{'selected' if flt.user.lower() == u.lower() else ''}}>{{u}}</option>
      % end
      % if flt.user and flt.user.lower() not in [u.lower() for u in users]:  # a link naming a deleted user: the filter says whom it shows
        <option value="{{flt.user}}" selected>{{flt.user}} (no such user now)</option>
      % end
      </select></div>
    <div><label for="f-level">Engagement</label>
      <select id="f-level" name="level"><option value="">Any level</option>
      % for g in groups:
        <option value="{{g}}" {{'selected' if flt.level == g else ''}}>{{g}}</option>
      % end
      % if flt.level and flt.level not in groups:  # a hand-made or old link: shown as what it asked, not as "Any level"
        <option value="{{flt.level}}" selected>{{flt.level}} (not a level)</option>
      % end
      </select></div>
    <div><label for="f-emotion">Emotion</label>
      <select id="f-emotion" name="emotion"><option value="">Any emotion</option>
      % for e in emotions:
        <option value="{{e}}" {{'selected' if flt.emotion == e else ''}}>{{e}}</option>
      % end
      % if flt.emotion and flt.emotion not in emotions:  # e.g. a label of an earlier model, purged since: the empty table is this filter's
        <option value="{{flt.emotion}}" selected>{{flt.emotion}} (none in the log now)</option>
      % end
      </select></div>
    <div><label for="f-kind">Source</label>
      <select id="f-kind" name="kind"><option value="">Live and uploads</option>
        <option value="live" {{'selected' if flt.kind == 'live' else ''}}>Live state changes</option>
        <option value="upload" {{'selected' if flt.kind == 'upload' else ''}}>Uploads</option>
      % if flt.kind and flt.kind not in ('live', 'upload'):
        <option value="{{flt.kind}}" selected>{{flt.kind}} (not a source)</option>
      % end
      </select></div>
    % bad = get('bad_dates') or {}
    % dates = (('from', 'From', flt.date_from), ('to', 'To', flt.date_to))
    % for key, label, value in dates:
    % if key in bad:  # a date field shows nothing for a value that is not a day: the note below says what it was
    <div><label for="f-{{key}}">{{label}}</label><input id="f-{{key}}" name="{{key}}" type="date" value="" aria-invalid="true" aria-describedby="f-{{key}}-bad log-error"{{!' autofocus' if key == next(iter(bad)) else ''}}></div>
    % else:
    <div><label for="f-{{key}}">{{label}}</label><input id="f-{{key}}" name="{{key}}" type="date" value="{{value}}"></div>
    % end
    % end
    % for key, label, value in dates:
    % if key in bad:
    <p id="f-{{key}}-bad" class="error date-note">{{label}} was {{repr(bad[key])}}, which is not a date, so the {{label}} field is empty: pick a day there, or leave it empty for no limit.</p>
    % end
    % end
    <div class="actions"><button type="submit" id="apply">Filter</button> <a href="/admin/log" class="button secondary">Clear</a></div>
  </form>
  <p class="presets" id="presets">Dates:
  % for label, href in presets:
    <a href="{{href}}">{{label}}</a>
  % end
  </p>
  % if get('done'):
  <p class="ok" role="status" id="log-done">{{done}}</p>
  % end
  % if error:
  <p class="error" role="alert" id="log-error">{{error}}</p>
  % end
  <p class="row between"><span id="count">{{total}} row{{'' if total == 1 else 's'}}</span>
    % if not error:  # a refused filter has no rows to download (and "download" would hide the 400 page)
    <a href="/admin/log.csv{{'?' + query if query else ''}}" id="csv" class="button secondary" download>Download CSV of these rows</a>
    % end
  </p>
  % if not rows:
  <p class="empty" id="log-empty">{{'No rows match these filters.' if query else 'Nothing logged yet: live state changes and analysed photos appear here.'}}</p>
  % else:
  <div class="table-wrap">
  <table id="log">
    <thead><tr><th scope="col">Time <span class="hint" id="log-zone" title="this device's time zone (timedatectl set-timezone changes it)">({{_t.strftime('%Z')}})</span></th><th scope="col">Source</th><th scope="col">User</th><th scope="col">Engagement</th><th scope="col">Emotion</th><th scope="col">Confidence</th><th scope="col">Image</th></tr></thead>
    <tbody>
    % for r in rows:
      <tr><td>
      % if r['upload_id']:
        <a href="/uploads/{{r['upload_id']}}" title="Open this photo's result">{{local_time(r['t'])}}</a>
      % else:
        {{local_time(r['t'])}}
      % end
      </td><td>{{source_words.get(r['kind'], r['kind'])}}</td><td>{{r['username'] or ''}}</td>
      <td><span class="pill g-{{r['grp'].replace(' ', '-').lower()}}">{{r['level']}}</span></td><td>{{r['emotion'] or ''}}</td><td>{{'%.0f%%' % (r['confidence'] * 100) if r['confidence'] is not None else ''}}</td>
      <td>
      % if r['image_path']:
        <a href="/uploads/{{r['upload_id']}}"><img class="thumb" src="/admin/image/{{r['upload_id']}}" alt="Stored image of upload {{r['upload_id']}}" loading="lazy" width="64"></a>
      % elif r['kind'] == 'upload':
        <span class="hint">not kept</span>
      % end
      </td></tr>
    % end
    </tbody>
  </table>
  </div>
  <nav class="pager" aria-label="Pages">
    % if page_no > 1:
    <a href="/admin/log?{{query + '&' if query else ''}}page={{page_no - 1}}" rel="prev">← Newer</a>
    % end
    <span>Page {{page_no}} of {{pages}}</span>
    % if page_no < pages:
    <a href="/admin/log?{{query + '&' if query else ''}}page={{page_no + 1}}" rel="next" id="next-page">Older →</a>
    % end
  </nav>
  % end
</section>
