% rebase('base.tpl', title=title)
% import time as _t
<section class="card">
  <h1>Users</h1>
  % if done:
  % # focused: after an action the page loads anew, and a status there from the start was not read out
  <p class="ok" role="status" tabindex="-1" autofocus id="users-done">{{done}}</p>
  % end
  % if error:
  <p class="error" role="alert" id="users-error">{{error}}</p>
  % end
  <p class="hint" id="users-uploads-only">Engaged share and Mostly count the faces in the photos each user uploaded.
    The desk's live engagement belongs to no account: it is on the <a href="/admin">dashboard</a> and in the
    <a href="/admin/log">log</a>.</p>
  <form method="get" action="/admin/users" class="filters">
    <div><label for="u-level">Mostly (uploaded photos)</label>
      <select id="u-level" name="level"><option value="">Any engagement</option>
      % for g in groups:
        <option value="{{g}}" {{'selected' if level == g else ''}}>{{g}}</option>
      % end
        <option value="none" {{'selected' if level == 'none' else ''}}>No results yet</option>
      </select></div>
    <div class="actions"><button type="submit">Filter</button></div>
  </form>
  % if level_note:
  <p class="hint" role="status" id="u-level-note">{{level_note}}</p>
  % end
  % if not people:
  <p class="empty" id="users-empty">No users match this filter.</p>
  % else:
  <div class="table-wrap">
  <table id="users">
    <thead><tr><th scope="col">User</th><th scope="col">Role</th><th scope="col">Photos</th><th scope="col">Engaged share (uploaded photos)</th><th scope="col">Mostly (uploaded photos)</th><th scope="col">Last log-in <span class="hint">({{_t.strftime('%Z')}})</span></th><th scope="col">Actions</th></tr></thead>
    <tbody>
    % for u in people:
      <tr data-user="{{u['username']}}">
        <td><a href="/admin/log?user={{u['username']}}">{{u['username']}}</a>{{' (disabled)' if u['disabled'] else ''}}{{' (you)' if u['id'] == me.id else ''}}{{!' <span class="hint">(password not yet chosen)</span>' if u['must_change_password'] else ''}}{{!' <strong class="locked">(locked)</strong>' if u['username'].lower() in locked else ''}}</td>
        <td>{{u['role']}}</td>
        <td>{{u['uploads']}}</td>
        <td>{{'%.0f%%' % (u['engaged_share'] * 100) if u['engaged_share'] is not None else '–'}}</td>
        <td>
        % if u['dominant']:
          <span class="pill g-{{u['dominant'].replace(' ', '-').lower()}}">{{u['dominant']}}</span>
        % else:
          <span class="hint">no results</span>
        % end
        </td>
        <td>{{local_time(u['last_login'], '%Y-%m-%d %H:%M') if u['last_login'] else 'never'}}</td>
        <td>
          <details class="actions-menu"><summary>Manage<span class="sr-only"> {{u['username']}}</span></summary>
          % if u['id'] != me.id:
          <form method="post" action="/admin/users/{{u['id']}}/password{{query}}" class="row">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <div><label for="pw-{{u['id']}}">New password<span class="sr-only"> for {{u['username']}}</span></label>
            <input id="pw-{{u['id']}}" name="password" type="password" minlength="8" autocomplete="new-password" aria-describedby="pw-hint-{{u['id']}}">
            <p class="hint" id="pw-hint-{{u['id']}}">Left empty: a generated one, shown once.</p></div>
            <label class="check"><input type="checkbox" name="temporary" checked> they choose their own at the next log-in</label>
            <button type="submit" class="secondary">Reset password<span class="sr-only"> of {{u['username']}}</span></button>
          </form>
          % else:
          <p class="hint"><a href="/account">Change your password</a> (it asks for the current one)</p>
          % end
          % if u['id'] != me.id:
          <form method="post" action="/admin/users/{{u['id']}}/role{{query}}" class="row">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <div><label for="role-{{u['id']}}">Role<span class="sr-only"> of {{u['username']}}</span></label>
            <select id="role-{{u['id']}}" name="role">
            % for r in roles:
              <option value="{{r}}"{{' selected' if u['role'] == r else ''}}>{{r}}</option>
            % end
            </select></div>
            <button type="submit" class="secondary">Change role<span class="sr-only"> of {{u['username']}}</span></button>
          </form>
          % end
          % if u['username'].lower() in locked:
          <form method="post" action="/admin/users/{{u['id']}}/unlock{{query}}" class="inline">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <button type="submit" class="secondary">Unlock log-in<span class="sr-only"> of {{u['username']}}</span></button>
          </form>
          % end
          % if u['id'] != me.id:
          <form method="post" action="/admin/users/{{u['id']}}/logout{{query}}" class="inline">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <button type="submit" class="secondary">Log out<span class="sr-only"> {{u['username']}}</span></button>
          </form>
          % end
          % if u['id'] != me.id:
          <form method="post" action="/admin/users/{{u['id']}}/{{'enable' if u['disabled'] else 'disable'}}{{query}}" class="inline">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <button type="submit" class="secondary">{{'Enable' if u['disabled'] else 'Disable'}}<span class="sr-only"> {{u['username']}}</span></button>
          </form>
          % end
          <form method="post" action="/admin/users/{{u['id']}}/delete-data{{query}}" class="inline">
            <input type="hidden" name="csrf" value="{{csrf}}">
            % if u['id'] == me.id:
            <button type="submit" class="danger">Delete my photos</button>
            % else:
            <button type="submit" class="danger">Delete their data<span class="sr-only"> ({{u['username']}})</span></button>
            % end
          </form>
          % if u['id'] != me.id:
          <form method="post" action="/admin/users/{{u['id']}}/delete{{query}}" class="inline">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <button type="submit" class="danger">Delete user<span class="sr-only"> {{u['username']}}</span></button>
          </form>
          % end
          </details>
        </td>
      </tr>
    % end
    </tbody>
  </table>
  </div>
  % end
</section>
<section class="card narrow-left">
  <h2>Add a user</h2>
  <form method="post" action="/admin/users{{query}}" id="new-user" class="stacked">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <input type="hidden" name="attempt" value="{{attempt}}">
    % invalid = typed.get('invalid', '') if error else ''
    % bad = lambda field: ' aria-invalid="true" autofocus' if invalid == field else ''
    % err = lambda field: 'users-error' if invalid == field else ''
    % told = lambda *ids: ' aria-describedby="' + ' '.join(i for i in ids if i) + '"' if any(ids) else ''
    <label for="n-username">User name</label>
    <input id="n-username" name="username" autocomplete="off" autocapitalize="none" autocorrect="off" spellcheck="false" required pattern="(?=.*[A-Za-z0-9])[A-Za-z0-9_.\-]{2,32}" title="2-32 letters, digits, dots, dashes or underscores, at least one a letter or digit; letters a-z only: no accents, no spaces" value="{{typed.get('username', '')}}"{{!told('n-username-hint', err('username'))}}{{!bad('username')}}>
    <p class="hint" id="n-username-hint">2-32 letters, digits, dots, dashes or underscores, at least one a letter or digit; letters a-z only: no accents, no spaces</p>
    <label for="n-password">Password (at least 8 characters)</label>
    <input id="n-password" name="password" type="password" autocomplete="new-password" minlength="8" required{{!told(err('password'))}}{{!bad('password')}}>
    <label class="check"><input id="n-temporary" type="checkbox" name="temporary"{{' checked' if typed.get('temporary', True) else ''}}{{!told(err('temporary'))}}{{!bad('temporary')}}> They choose their own password at the first log-in</label>
    <label for="n-role">Role</label>
    <select id="n-role" name="role"{{!told(err('role'))}}{{!bad('role')}}>
    % for r in roles:
      <option value="{{r}}"{{' selected' if typed.get('role') == r else ''}}>{{r}}</option>
    % end
    </select>
    <button type="submit">Add user</button>
  </form>
  <h2>Add a class</h2>
  <form method="post" action="/admin/users/class" id="new-class" class="stacked">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <input type="hidden" name="attempt" value="{{attempt}}">
    <label for="c-names">Class list: each student's log-in name on a line of its own</label>
    <textarea id="c-names" name="names" rows="8" autocomplete="off" autocapitalize="none" autocorrect="off" spellcheck="false" required{{!told('c-names-hint', err('names'))}}{{!bad('names')}}>{{typed.get('names', '')}}</textarea>
    <p class="hint" id="c-names-hint">Each gets a generated password, shown once on the next page to print or copy;
      they choose their own at the first log-in. One name that is taken or not allowed creates none, and is named
      (with one that would do: user names have the letters a-z only, no accents or spaces).</p>
    <button type="submit">Add students</button>
  </form>
  <h2>End of a term</h2>
  <form method="post" action="/admin/users/students/delete" id="delete-students" class="stacked">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <p class="hint" id="delete-students-hint">Every student account and its photos, at once: the next page names
      them and asks first. Admins and instructors stay.</p>
    <button type="submit" class="danger" aria-describedby="delete-students-hint">Delete every student…</button>
  </form>
</section>
