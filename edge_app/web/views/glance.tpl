<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · engage-edge</title>
<link rel="stylesheet" href="/static/app.css">
<link rel="icon" href="/favicon.ico" sizes="32x32">
<link rel="icon" href="/static/icon.svg" type="image/svg+xml">
<script src="/static/net.js"></script>
</head>
<body class="glance" id="glance" data-group="{{state.group if state else ''}}">
<main class="glance-field">
  <h1 class="sr-only">Engagement now</h1>
  % word, _, detail = level.partition(' - ')
  <div>
    <p class="glance-word" id="glance-word">{{word}}</p>
    <p class="glance-detail" id="glance-detail">{{detail}}</p>
  </div>
  <p class="sr-only" role="status" data-announce-state></p>
  % # the script updates the page and keeps the log-in alive: without it, neither is true (glance.js shows this note)
  % if user.role != 'student':
  <p class="glance-note" id="glance-note" hidden>Updated every second from this device. While this page is open, you stay logged in
    on this browser: log out when you leave the desk. A log-in still ends {{max_hours}} hour{{'' if max_hours == 1 else 's'}} after it
    began: this page says so shortly before.</p>
  % else:
  <p class="glance-note" id="glance-note" hidden>Updated every second from this device. Your log-in ends as on any other page
    when you have not used it for a while.</p>
  % end
  <p class="glance-note" id="state-meaning">A computer's guess from a facial expression at one moment: it can be wrong, and it is not a judgement of anyone.</p>
  <noscript><p class="glance-note">This view does not update itself with JavaScript off: reload the page to see the state now.</p></noscript>
</main>
<nav class="glance-tools" aria-label="Desk view">
  <button type="button" id="fullscreen" class="secondary" hidden>Full screen</button>
  <a href="/live" class="button secondary">Back to Live</a>
  % # the note above says to log out when leaving the desk: the page had no way to
  <form method="post" action="/logout" class="inline">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button type="submit" class="secondary">Log out</button>
  </form>
</nav>
% # a student's log-in ends unused as on any page, and anyone's at web.session_max_hours, which this page does not
% # stretch: said a minute before, as there (an instructor's display went to the log-in page unwarned at 12 h)
% include('idle_warning.tpl')
<script src="/static/state.js"></script>
<script src="/static/glance.js"></script>
</body>
</html>
