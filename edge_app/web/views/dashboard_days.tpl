%# The dashboard's 14-day chart and its table (today's bar grows during the day): in the page and in
%# /api/admin/today.
  {{!chart}}
  <ul class="legend" aria-hidden="true">
    % for g in groups:
    <li><span class="swatch {{g.css_class}}"></span>{{g}}</li>
    % end
  </ul>
  <details class="as-table" id="days-table">
    <summary>The same as a table</summary>
    <div class="table-wrap">
    <table class="numbers">
      <caption class="sr-only">Minutes per engagement level per day, last {{len(days)}} days</caption>
      <thead><tr><th scope="col">Day</th>
        % for g in groups:
        <th scope="col">{{g}}</th>
        % end
      </tr></thead>
      <tbody>
      % for d in days:
      <tr><th scope="row">{{d['day'].strftime('%a %d %b')}}</th>
        % for g in groups:
        <td>{{'%.0f' % (d['seconds'].get(g, 0) / 60)}}</td>
        % end
      </tr>
      % end
      </tbody>
    </table>
    </div>
  </details>
  % if not any(d['total_s'] for d in days):
  <p class="empty">No live time recorded in the last 14 days.</p>
  % end
