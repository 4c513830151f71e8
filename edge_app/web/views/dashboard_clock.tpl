%# The dashboard's clock warning: drawn in the page and sent with /api/admin/today (dashboard.js
%# swaps it in when it changed), from the same values (admin_dashboard.piece_values).
  % if clock_unset:
  <p class="error" role="alert" id="clock-unset"><strong>Times may be wrong:</strong> no time server has set this
    device's clock since it started.
    % if clock_trusted:
    Old records are deleted, and quiet hours kept, by its own clock (store.trust_device_clock).
    % else:
    Until one has, a record is deleted once this device has been switched on for the retention period since
    it was made: days it is off do not count, so records stay longer than by the calendar (a Raspberry Pi has no
    battery clock, and a clock days ahead would delete today's records; students' pages say so), and with quiet
    hours set the buzzer stays silent.
    % end
    To fix it, {{clock_help}}.
    % if not clock_trusted:
    A device whose clock keeps time by itself (a Jetson, a Pi 5 with its clock battery) on a network with no
    time server: set store.trust_device_clock = true in its config file once its date is right.
    % end
    </p>
  % end
