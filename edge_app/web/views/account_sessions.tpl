% # the account page's log-ins (the device's and the classroom's): 'others' and 'ended' counts, POST /account/sessions
  <h2>Where you are logged in</h2>
  % ended = get('ended', None)
  % if ended is not None:
  <p class="ok" role="status" id="sessions-ended">{{'Logged out %d other browser%s; every' % (ended, '' if ended == 1 else 's') if ended else 'Every'}} other browser you logged in from is a stranger again.</p>
  % end
  % others = get('others', 0)
  % if others:
  <p id="sessions-others">You are also logged in on {{others}} other browser{{'' if others == 1 else 's'}}. Not you, or
    a computer you left? Log them out (they are also no longer spared the waits after wrong passwords
    there); this browser stays logged in.</p>
  <form method="post" action="/account/sessions" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button type="submit" class="secondary" id="sessions-end">Log out everywhere else</button>
  </form>
  % else:
  <p id="sessions-none">Only here. A browser you logged in from before (a lost laptop too) is still spared the waits
    after wrong passwords for your name until you change your password, or until you make every other browser a
    stranger again.</p>
  <form method="post" action="/account/sessions" class="row">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button type="submit" class="secondary" id="sessions-forget">Forget every other browser</button>
  </form>
  % end
