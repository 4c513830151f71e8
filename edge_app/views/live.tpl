% rebase('base.tpl', title=title)
<section class="card">
  <h1>Live</h1>
  <p class="state">Now: <strong id="state">{{state.level if state else 'no camera loop'}}</strong></p>
  <img id="stream" src="/live.mjpg" alt="Live camera view with faces and engagement marked" class="stream">
  <p class="hint">Frames are shown here only; they are not stored.</p>
</section>
<script src="/static/live.js"></script>
