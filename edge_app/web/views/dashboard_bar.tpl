%# The dashboard's Today bar with its legend (each colour's words and share), or its "no live time" note:
%# in the page and in /api/admin/today.
  % if today['total_s'] == 0:
  <p class="empty">No live time recorded today yet: the figures fill in minute by minute while the camera loop runs.</p>
  % else:
  <div class="stack" role="img" aria-label="{{bar_words}}">
    % for g in groups:
    % if g in widths:
    <span class="seg {{g.css_class}} w{{widths[g]}}" title="{{g}}: {{'%.0f' % (today['seconds'][g] / 60)}} min"></span>
    % end
    % end
  </div>
  <ul class="legend" aria-hidden="true">
    % for g, share in bar_shares:
    <li><span class="swatch {{g.css_class}}"></span>{{g}} {{share}}</li>
    % end
  </ul>
  % end
