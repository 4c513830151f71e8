%# The dashboard's store warning (logging paused: disk nearly full, database not writable): in the
%# page and in /api/admin/today, so an open dashboard shows it when it comes and drops it when it goes.
  % if health and health.store != 'ok':
  <p class="error" role="alert" id="store-warning"><strong>The live state is not being recorded:</strong>
    % if health.store == 'disk full':
    the device's disk is nearly full. State changes, minutes and alerts wait in memory
    (the oldest are lost once too many wait) and uploads are refused until there is room: delete old data on the <a href="/admin/users">Users page</a> or
    lower Keep data for (days) in <a href="/admin/settings">Settings</a>.</p>
  % # the figure outside the alert, kept up in place (static/dashboard.js): its changes are not read out
  <p class="hint" id="store-free">Now: <span data-figure="store-free">{{health.store_error}}</span>.</p>
    % else:
    the database cannot be written ({{health.store}}: {{health.store_error}}). The service's journal says more.</p>
    % end
  % end
  % if get('lost_at_reboot'):
  % lost, _, rest = lost_at_reboot.partition(': ')
  <p class="error" role="alert" id="store-in-memory"><strong>{{lost[0].upper() + lost[1:]}}:</strong> {{rest}}.</p>
  % end
