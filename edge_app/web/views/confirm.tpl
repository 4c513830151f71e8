% rebase('base.tpl', title=title)
<section class="card narrow" id="confirm-password">
  <h1>Confirm your password</h1>
  % if stale:
  <p class="error" role="alert" id="confirm-stale">Nothing was changed. You last typed your password over
    {{minutes}} minutes ago: type it again, then make the change once more.</p>
  % if get('kept', False):
  <p class="hint" id="confirm-kept">What you wrote in the form is kept for {{kept_minutes}} minutes, in this device's
    memory only: once you confirm, it is back in its form, to check and send again.</p>
  % end
  % end
  <p class="hint">Changes to users, settings, the model and the classroom link, and deleting someone else's photo,
    ask for it, so that a browser left logged in cannot be used by someone else.</p>
  % if error:
  <p class="error" role="alert" id="confirm-error">{{error}}</p>
  % end
  <form method="post" action="/confirm" class="stacked">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <input type="hidden" name="next" value="{{next}}">
    <p>Logged in as <strong>{{user.username}}</strong>.</p>
    <label for="confirm-pw">Password</label>
    <input id="confirm-pw" name="password" type="password" autocomplete="current-password" required autofocus>
    <button type="submit" id="confirm-submit">Confirm</button>
  </form>
</section>
