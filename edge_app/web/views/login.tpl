% rebase(get('layout', 'base.tpl'), title=title)
<section class="card narrow">
  <h1>Log in</h1>
  % if get('ended') and not error:
  % # which of these ended it is not known here (the session is gone): all are said, the lifetime too
  <p class="error" role="alert" id="login-ended">Your session ended (idle too long, {{lifetime}} after the log-in, or
    logged out from another browser){{', so what you just sent was not saved: log in, then send it again' if ended == 'form' else ': log in again'}}.</p>
  % end
  % if error:
  <p class="error" role="alert" id="login-error">{{error}}</p>
  % elif get('logged_out'):
  <p class="ok" role="status" id="login-out">You are logged out: the next person at this computer cannot use your log-in.</p>
  % end
  <form method="post" action="/login" class="stacked">
    <input type="hidden" name="next" value="{{get('next', '/')}}">
    % wrong = get('invalid') == 'credentials'  # either may be wrong: both marked, the password focused
    % told = ' aria-describedby="login-error"' if error else ''
    <label for="username">User name</label>
    <input id="username" name="username" autocomplete="username" autocapitalize="none" autocorrect="off" spellcheck="false" value="{{get('username', '')}}" required{{!told}}{{!' aria-invalid="true"' if wrong else ' autofocus'}}>
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required{{!told}}{{!' aria-invalid="true" autofocus' if wrong else ''}}>
    <button type="submit">Log in</button>
  </form>
  <p class="hint">Forgotten your password? An admin of {{get('place', 'this device')}} can set a new one.</p>
</section>
