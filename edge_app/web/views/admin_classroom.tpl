% rebase('base.tpl', title=title)
<section class="card">
  <h1>Classroom broker</h1>
  <p class="hint">This device can report its engagement level (never an image, a probability or a name) to the
    school's MQTT broker, where the instructor's classroom page shows every desk.</p>
  <p id="mqtt-status" role="status" class="{{'ok' if status.get('connected') else 'hint'}}"><strong>Now:</strong>
  % if not status.get('enabled'):
    MQTT is off (no broker host set).
  % else:
    {{status['text']}}; {{status['backlog']}} message(s) waiting.
  % end
  </p>
  % if message:
  <p class="{{'ok' if ok else 'error'}}" role="{{'status' if ok else 'alert'}}" id="mqtt-message">{{message}}</p>
  % end
  <form method="post" action="/admin/classroom" id="mqtt-form" autocomplete="off">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <input type="hidden" name="base" value="{{base}}">
    <div class="grid2">
    % for key, label, kind, help in fields:
    % fid = 'mqtt-' + key.replace('_', '-')
    <div class="field">
    % if kind is bool:
      <label class="check" for="{{fid}}"><input id="{{fid}}" name="mqtt.{{key}}" type="checkbox" {{'checked' if values.get(key) in (True, 'on') else ''}} aria-describedby="{{fid}}-help"> {{label}}</label>
    % elif key == 'password':
      <label for="{{fid}}">{{label}}</label>
      <input id="{{fid}}" name="mqtt.{{key}}" type="password" autocomplete="new-password" aria-describedby="{{'mqtt-message ' if password_needed else ''}}{{fid}}-help mqtt-password-saved"{{!' aria-invalid="true" autofocus' if password_needed else ''}}>
    % else:
      <label for="{{fid}}">{{label}}</label>
      % at_fault = invalid == 'mqtt.' + key
      <input id="{{fid}}" name="mqtt.{{key}}" value="{{values.get(key, '')}}" aria-describedby="{{'mqtt-message ' if at_fault else ''}}{{fid}}-help" {{'inputmode=numeric' if kind is int else ''}}{{!' aria-invalid="true" autofocus' if at_fault else ''}}>
    % end
      <small id="{{fid}}-help" class="{{'error' if key == 'password' and password_hint else 'hint'}}">{{password_hint if key == 'password' and password_hint else help}}</small>
    % if key == 'password':
      <small id="mqtt-password-saved" class="hint">{{password_saved}}</small>
      <label class="check" for="mqtt-no-password"><input id="mqtt-no-password" name="mqtt.no_password" type="checkbox" {{'checked' if values.get('no_password') else ''}} aria-describedby="mqtt-no-password-help"> No password</label>
      <small id="mqtt-no-password-help" class="hint">For a broker that asks for none: Save deletes the saved password.</small>
    % end
    </div>
    % end
    </div>
    <button type="submit" name="action" value="test" class="secondary">Test connection</button>
    <button type="submit" name="action" value="save">Save</button>
  </form>
</section>
