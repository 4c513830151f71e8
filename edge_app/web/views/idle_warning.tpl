% # the idle time-out's warning (static/session.js): a page left unused says so a minute before its log-in
% # ends, with "Stay logged in" (WCAG 2.2.1); it turned into the log-in page unannounced, a chosen file lost
% if get('user') and get('idle_s'):
<div id="idle-warning" class="idle-warning" role="status" data-idle-s="{{idle_s}}" data-left-s="{{get('session_left_s') if get('session_left_s') is not None else ''}}" data-csrf="{{csrf}}"></div>
<script src="/static/session.js"></script>
% end
