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
  <p class="glance-note" id="glance-note">Updated every second from this device. While this page is open, you stay logged in
    on this browser: log out when you leave the desk.</p>
</main>
<nav class="glance-tools" aria-label="Desk view">
  <button type="button" id="fullscreen" class="secondary">Full screen</button>
  <a href="/live" class="button secondary">Back to Live</a>
  % # the note above says to log out when leaving the desk: the page had no way to
  <form method="post" action="/logout" class="inline">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button type="submit" class="secondary">Log out</button>
  </form>
</nav>
<script src="/static/state.js"></script>
<script src="/static/glance.js"></script>
</body>
</html>
