% rebase('base.tpl', title=title)
<section class="card narrow" id="confirm">
  <h1>Delete every student?</h1>
  <p>This cannot be undone. It removes for good:</p>
  <ul id="confirm-losses">
    <li>{{len(people)}} student account{{'' if len(people) == 1 else 's'}}, their passwords and every open session:
      {{', '.join(p['username'] for p in people)}}</li>
    <li>{{counts['uploads']}} uploaded photo{{'' if counts['uploads'] == 1 else 's'}} and the results of their {{counts['faces']}} face{{'' if counts['faces'] == 1 else 's'}}</li>
    <li>{{counts['images']}} kept image{{'' if counts['images'] == 1 else 's'}}</li>
  </ul>
  <p class="hint">Admins and instructors stay, and so do the desk's states and minutes (they name no one).
    Keep what the school must keep first: <code>engage-edge export</code> or <code>engage-edge backup</code>
    (firmware/README.md).</p>
  <p class="hint">The audit log records each deletion.</p>
  <p>What stays (for an erasure request, this is not all of it):</p>
  <ul id="confirm-kept">
    <li>the audit log's lines naming these students: kept a year, so a deletion stays accountable</li>
    <li>alert frames, if an admin turned their storing on: they show the desk, not an account (delete them on
      <a href="/admin/alerts">Alerts</a>)</li>
    <li>backups and CSV exports made before now, wherever they were copied</li>
    <li>the system journal's security lines naming the accounts, until journald's size limit drops them</li>
  </ul>
  <form method="post" action="/admin/users/students/delete" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <input type="hidden" name="confirm" value="yes">
    % for p in people:
    <input type="hidden" name="user" value="{{p['id']}}">
    % end
    <button type="submit" class="danger" id="confirm-delete">Delete {{len(people)}} student{{'' if len(people) == 1 else 's'}}</button>
    <a href="/admin/users" class="button secondary" id="confirm-cancel">Cancel</a>
  </form>
</section>
