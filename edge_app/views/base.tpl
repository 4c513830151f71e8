<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · engage-edge</title>
<link rel="stylesheet" href="/static/app.css">
</head>
<body>
<header class="top">
  <a class="brand" href="/">engage-edge</a>
  % if user:
  <nav>
    <a href="/upload" class="{{'on' if path.startswith('/upload') else ''}}">Upload</a>
    <a href="/live" class="{{'on' if path.startswith('/live') else ''}}">Live</a>
    % if user.is_admin:
    <a href="/admin" class="{{'on' if path.startswith('/admin') else ''}}">Admin</a>
    % end
    <form method="post" action="/logout" class="inline">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <button type="submit" class="link">Log out {{user.username}}</button>
    </form>
  </nav>
  % end
</header>
<main>
{{!base}}
</main>
<footer>engage-edge {{version}} · no face images leave this device</footer>
</body>
</html>
