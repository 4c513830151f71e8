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
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <div class="brand"><a href="/">engage-edge</a>
  % if user and now:
  <a id="state-dot" class="dot" href="/glance" data-group="{{now.group}}" title="Now: {{now.level}} (open the desk view)"><span class="sr-only">Now: {{now.level}} (open the desk view)</span></a>
  % end
  </div>
  % if user:
  % # the menu's current item, said as well as underlined: the page itself, or the section it is in
  % def current(href, here):
  %   return ('class="on" aria-current="%s"' % ('page' if path == href else 'true')) if here else ''
  % end
  <nav aria-label="Main">
    % # a password given to them is replaced first: every other page led back to Your account
    % if not user.must_change_password:
    <a href="/upload" {{!current('/upload', path.startswith('/upload'))}}>Upload</a>
    <a href="/live" {{!current('/live', path.startswith('/live'))}}>Live</a>
    % end
    % if camera_switch:
    % from edge_app.web.privacy import page_back, pause_title
    % back = page_back()
    % # state.js presses it in place; without it, the answer to a form (no page to open again) stays in its tab,
    % # the button saying so (WCAG 3.2.5: no new tab unannounced)
    % new_tab = '' if back else '<noscript> (opens in a new tab)</noscript>'
    <form method="post" action="/privacy" class="inline privacy" data-pause-title="{{pause_title()}}"{{!'' if back else ' target="_blank"'}}>
      <input type="hidden" name="csrf" value="{{csrf}}">
      <input type="hidden" name="back" value="{{back}}">
      % from edge_app.web.privacy import header_may_resume, header_words
      % if paused and header_may_resume(user, paused) and not user.must_change_password:
      <span class="pill g-paused" id="paused">{{header_words(user, paused)}}</span>
      <button type="submit" name="do" value="resume" class="link" id="privacy-button">Resume camera{{!new_tab}}</button>
      % elif paused:
      <span class="pill g-paused" id="paused">{{header_words(user, paused)}}</span>
      % else:
      <button type="submit" name="do" value="pause" class="link" id="privacy-button" title="{{pause_title()}}">Pause camera{{!new_tab}}</button>
      % end
    </form>
    % end
    % if user.is_admin and not user.must_change_password:
    <a href="/admin" {{!current('/admin', path.startswith('/admin'))}}>Admin</a>
    % end
    <a href="/account" {{!current('/account', path.startswith('/account'))}} title="Your account" aria-label="Your account: {{user.username}}">{{user.username}}</a>
    <form method="post" action="/logout" class="inline">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <button type="submit" class="link">Log out</button>
    </form>
  </nav>
  % end
</header>
% if user and user.is_admin and path.startswith('/admin'):
<nav class="sub" aria-label="Admin">
  % for href, label in (('/admin', 'Dashboard'), ('/admin/log', 'Log'), ('/admin/alerts', 'Alerts'), ('/admin/users', 'Users'), ('/admin/settings', 'Settings'), ('/admin/classroom', 'Classroom broker'), ('/admin/model', 'Model'), ('/admin/audit', 'Audit')):
  <a href="{{href}}" {{!current(href, path == href)}}>{{label}}</a>
  % end
</nav>
% end
<main id="main">
{{!base}}
% include('idle_warning.tpl')
</main>
% # the privacy page's link for whoever may open it (logged in: the log-in page would only send them back here)
<footer>engage-edge{{' ' + version if user and user.is_admin else ''}} · analysed on this device; no face images leave it{{!' · <a href="/privacy" id="privacy-link">Your privacy</a>' if user else ''}}</footer>
% if user and now:
<script src="/static/state.js"></script>
% end
<script src="/static/reflow.js"></script>
</body>
</html>
