% rebase(get('layout', 'base.tpl'), title=title)
<section class="card narrow">
  <h1>Your account</h1>
  <p>Logged in as <strong>{{user.username}}</strong> ({{user.role}}).</p>
  % if user.must_change_password and not done:
  <p class="error" role="alert" id="account-first">Choose your own password before anything else: the one you
    logged in with was
    % if user.role == 'admin':
    given to you (generated at the first start and printed to the console and the system journal, or set by
    another admin or a technician),
    % else:
    set for you by an admin or a technician,
    % end
    so others may know it.</p>
  % paused = get('paused')
  % if paused:
  % from edge_app.web.privacy import header_may_resume
  % if header_may_resume(user, paused):
  <p class="note" id="account-resume-waits">The camera stays paused: you can resume it once you have chosen your own password.</p>
  % end
  % end
  % end
  % if done:
  % n = get('logged_out', 0)
  <p class="ok" role="status" id="account-done">Password changed{{': from now on you log in with the one you chose' if get('first') else ''}}.
    % if n:
    {{n}} other browser{{' was' if n == 1 else 's were'}} logged out: log in there again with the new password.
    % end
    % if get('next', '/') not in ('/', '/account'):
    <a href="{{next}}" id="account-continue">Continue</a>
    % elif get('home_link'):
    <a href="/">{{home_link}}</a>
    % else:
    <a href="/" id="account-continue">Continue</a>
    % end
  </p>
  % end
  % if error:
  <p class="error" role="alert" id="account-error">{{error}}</p>
  % end
  <h2>Change password</h2>
  <form method="post" action="/account" class="stacked">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <input type="hidden" name="next" value="{{get('next', '/')}}">
    % bad = lambda field: ' aria-invalid="true" aria-describedby="account-error" autofocus' if error and get('invalid') == field else ''
    <label for="current">Current password</label>
    <input id="current" name="current" type="password" autocomplete="current-password" required{{!bad('current')}}>
    <label for="new">New password (at least 8 characters)</label>
    <input id="new" name="new" type="password" autocomplete="new-password" minlength="8" required{{!bad('new')}}>
    <label for="again">New password again</label>
    <input id="again" name="again" type="password" autocomplete="new-password" minlength="8" required{{!bad('again')}}>
    <button type="submit">Change password</button>
  </form>
  % include('account_sessions.tpl')
</section>
