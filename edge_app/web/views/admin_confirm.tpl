% rebase('base.tpl', title=title)
% whole = action == 'delete'
% mine = user is not None and target.id == user.id  # an admin's own photos (never their own account: refused)
<section class="card narrow" id="confirm">
  <h1>{{'Delete the user %s?' % target.username if whole else 'Delete your own photos?' if mine else 'Delete the data of %s?' % target.username}}</h1>
  <p>This cannot be undone. It removes for good:</p>
  <ul id="confirm-losses">
    % if whole:
    <li>the {{target.role}} account <strong>{{target.username}}</strong>: its password and every open session</li>
    % end
    <li>{{counts['uploads']}} uploaded photo{{'' if counts['uploads'] == 1 else 's'}} and the results of their {{counts['faces']}} face{{'' if counts['faces'] == 1 else 's'}}</li>
    <li>{{counts['images']}} kept image{{'' if counts['images'] == 1 else 's'}}</li>
  </ul>
  % if mine:
  <p class="hint">Your account ({{target.username}}) stays, and you stay logged in.</p>
  % elif not whole:
  <p class="hint">The account stays: {{target.username}} can still log in.</p>
  % end
  <p class="hint">The audit log records that you did this.</p>
  <p>What stays (for an erasure request, this is not all of it):</p>
  <ul id="confirm-kept">
    <li>the audit log's lines naming {{target.username}} (what admins did to the account and to its photos): kept
      a year, so a deletion stays accountable</li>
    <li>the live log's states and minutes: they name no one (the desk's, not an account's)</li>
    <li>backups and CSV exports made before now, wherever they were copied</li>
    <li>the system journal's security lines naming the account, until journald's size limit drops them</li>
  </ul>
  <form method="post" action="/admin/users/{{target.id}}/{{action}}{{query}}" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <input type="hidden" name="confirm" value="yes">
    <button type="submit" class="danger" id="confirm-delete">{{'Delete user %s' % target.username if whole else 'Delete my photos' if mine else 'Delete their data'}}</button>
    <a href="/admin/users{{query}}" class="button secondary" id="confirm-cancel">Cancel</a>
  </form>
</section>
