<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · engage-edge classroom</title>
<link rel="icon" href="/favicon.ico" sizes="32x32">
<link rel="icon" href="/static/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/app.css">
<link rel="stylesheet" href="/static/classroom.css">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <span class="brand"><span class="dot" aria-hidden="true"></span>engage-edge classroom</span>
  % if user:
  <nav aria-label="Main">
    <a href="/">Classroom</a>
    <a href="/account">{{user.username}} ({{user.role}})</a>
    <form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit" class="link">Log out</button></form>
  </nav>
  % end
</header>
<main id="main">
{{!base}}
</main>
<footer>engage-edge{{' ' + version if user and user.is_admin else ''}} · desks report an engagement level only: no images, no names</footer>
</body>
</html>
