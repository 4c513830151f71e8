% rebase('base.tpl', title=title)
% import time as _t
<section class="card">
  <h1>Settings</h1>
  % if done:
  <p class="ok" role="status" id="settings-done">{{done}}</p>
  % end
  % if error:
  <p class="error" role="alert" id="settings-error">{{error}}</p>
  % end
  % if overridden:
  <div class="notice" id="settings-overridden">
    % if no_config_file:
    <p>Saved on this page, so used instead of the defaults. This device has no config file ({{device_config}}), so
      this page is where they are changed:</p>
    % else:
    <p>Saved on this page, so used instead of {{config_file}} (an edit there changes nothing while these are saved):</p>
    % end
    <ul>
    % for label, used, there in overridden:
      <li>{{label}}: <strong>{{used}}</strong> (there: {{there}})</li>
    % end
    </ul>
    <form method="post" action="/admin/settings/use-file">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <button type="submit" class="secondary">{{'Use the default values' if no_config_file else 'Use the values of ' + config_file}}</button>
    </form>
  </div>
  % end
  <form method="post" action="/admin/settings" id="settings" autocomplete="off">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <input type="hidden" name="base" value="{{base}}">
    <fieldset>
      <legend>Engagement, alerts and privacy</legend>
      <div class="grid2">
      % for key, label, kind, help in settings:
      % fid = key.replace('.', '-')
      % bad = ' aria-invalid="true" autofocus' if invalid == key else ''
      % described = ('settings-error ' if invalid == key else '') + fid + '-help' + (' ' + fid + '-allowed' if allowed[key] else '')
      <div class="field">
      % if kind is bool:
        <label class="check" for="{{fid}}"><input id="{{fid}}" name="{{key}}" type="checkbox" {{'checked' if values[key] else ''}} aria-describedby="{{described}}"{{!bad}}> {{label}}</label>
      % elif isinstance(kind, tuple):
        <label for="{{fid}}">{{label}}</label>
        <select id="{{fid}}" name="{{key}}" aria-describedby="{{described}}"{{!bad}}>
        % for c in kind:
          <option value="{{c}}" {{'selected' if values[key] == c else ''}}>{{c}}</option>
        % end
        </select>
      % else:
        <label for="{{fid}}">{{label}}</label>
        <input id="{{fid}}" name="{{key}}" value="{{values[key]}}" aria-describedby="{{described}}" {{'inputmode=decimal' if kind in (float, int) else ''}}{{!bad}}>
      % end
        <small id="{{fid}}-help" class="hint">{{help}}
        % if key == 'indicators.quiet_hours':
          <span id="device-clock">The device's clock reads {{_t.strftime('%H:%M %Z', _t.localtime())}} now.</span>
        % end
        </small>
        % if allowed[key]:
        <small id="{{fid}}-allowed" class="hint">Allowed: {{allowed[key]}}.</small>
        % end
      </div>
      % end
      </div>
    </fieldset>
    <fieldset>
      <legend>Emotion → engagement level</legend>
      <p class="hint">A level starts with Engaged, Partially engaged or Not engaged (that picks the LED colour); text after " - " is a description.</p>
      <datalist id="levels">
      % for l in levels:
        <option value="{{l}}">
      % end
      </datalist>
      <div class="grid2">
      % for emotion, level in mapping.items():
      <div class="field">
        <label for="map-{{emotion}}">{{emotion}}</label>
        <input id="map-{{emotion}}" name="map.{{emotion}}" value="{{level}}" list="levels" required{{!' aria-invalid="true" aria-describedby="settings-error" autofocus' if invalid == 'map.' + emotion else ''}}>
      </div>
      % end
      </div>
    </fieldset>
    <button type="submit">Save settings</button>
  </form>
</section>
