% # the account page's log-ins (the device's and the classroom's): 'others' and 'ended' counts, POST /account/sessions
  <h2>Where you are logged in</h2>
  % ended = get('ended', None)
  % if ended is not None:
  <p class="ok" role="status" id="sessions-ended">{{'Logged out %d other browser%s; every' % (ended, '' if ended == 1 else 's') if ended else 'Every'}} other browser you logged in from now waits after wrong passwords for your name, like anyone else's.</p>
  % end
  % others = get('others', 0)
  % if others:
  <p id="sessions-others">You are also logged in on {{others}} other browser{{'' if others == 1 else 's'}}. If that is not
    you, or you left a computer logged in, log them out. This browser stays logged in.</p>
  <form method="post" action="/account/sessions" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button type="submit" class="secondary" id="sessions-end">Log out everywhere else</button>
  </form>
  % else:
  % # a known browser is slowed down by its own wrong passwords only (store/known_browsers.py)
  <p id="sessions-none">Only here. A browser you logged in from before (even a lost laptop) can still keep trying
    passwords for your name when others would have to wait, until you change your password or press the button below.</p>
  <form method="post" action="/account/sessions" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button type="submit" class="secondary" id="sessions-forget">Forget every other browser</button>
  </form>
  % end
