% rebase('base.tpl', title=title)
% import time as _t
<section class="card">
  <div class="head-row">
    <h1>Live</h1>
    <p class="state"><span>Now: <strong id="state" data-live-state data-group="{{state.group if state else ''}}">{{level}}</strong></span>
    <span class="sr-only" role="status" data-announce-state></span>
    · <a href="/glance">Desk view</a></p>
  </div>
  <p class="hint" id="state-meaning">A computer's guess from a facial expression at one moment: it can be wrong, and it is not a judgement of anyone.</p>
  <div class="split">
    <div>
      % if watch:
      % # live.js reads the stream and draws each frame in this picture, so that it sees the stream end (an <img>
      % # does not); a <template> until then: without JavaScript an empty <img> showed a broken box above the real one
      <template id="stream-template"><img id="stream" alt="Live camera view with faces and engagement marked" class="stream"
           width="640" height="480" aria-describedby="stream-status"></template>
      <noscript><img src="/live.mjpg" alt="Live camera view with faces and engagement marked" class="stream" width="640" height="480"></noscript>
      <p id="stream-status" role="status"></p>
      % else:
      <p class="empty" id="no-stream">The live picture is shown to admins only on this device: it shows whoever sits
        at the desk now. The state and the chart are here.</p>
      % end
      % # per viewer: a student who is never shown the picture is not told "frames are shown here"
      % if snapshots_on:
      <p class="hint" id="stream-note"><strong>One frame is stored when an alert fires</strong> (an admin turned
        this on): it stays on this device for {{kept_for}} unless an admin deletes it.
        {{'Other frames are shown here only.' if watch else 'No other frame is stored.'}} {{states_note}}</p>
      % else:
      <p class="hint" id="stream-note">{{'Frames are shown here only; they are not stored.' if watch else 'The camera\'s frames are not stored.'}}
        % if frames_kept:
        {{frames_kept}} {{'frame' if frames_kept == 1 else 'frames'}} stored with alerts while an admin had that on
        {{'stays' if frames_kept == 1 else 'stay'}} on this device for {{kept_for}} unless an admin deletes {{'it' if frames_kept == 1 else 'them'}}.
        % end
        {{states_note}}</p>
      % end
    </div>
    <div>
      <h2>Last <span id="minutes">10</span> minutes <span class="hint" id="timeline-zone" title="the times are this device's, as in its log">({{_t.strftime('%Z')}})</span></h2>
      % # live.js draws the chart here (its role and words with it); without JavaScript it said "loading" for ever
      <div id="timeline" class="timeline"><p class="hint" id="timeline-nojs">The chart needs JavaScript, which is off in
        this browser.{{!' The state changes are listed in the <a href="/admin/log">log</a>.' if user.is_admin else ''}}</p></div>
      <ul class="legend" aria-hidden="true">
        % for g in groups:
        <li><span class="swatch {{g.css_class}}"></span>{{g}}</li>
        % end
      </ul>
      <p id="timeline-stale" role="status"></p>
      <p class="hint" id="timeline-empty" hidden>No state changes yet: the chart fills as the loop runs.</p>
      % if own_chart:
      <p class="hint" id="timeline-own">Your chart begins when you logged in: this desk is shared, and what it showed
        before is another student's.</p>
      % end
    </div>
  </div>
</section>
<script src="/static/live.js"></script>
