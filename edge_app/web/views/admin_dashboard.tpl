% rebase('base.tpl', title=title)
% import time as _t
<section class="card">
  <h1>Today</h1>
  <div data-piece="clock" data-version="{{pieces['clock']['version']}}">{{!pieces['clock']['html']}}</div>
  <div data-piece="store" data-version="{{pieces['store']['version']}}">{{!pieces['store']['html']}}</div>
  <div class="tiles" id="today-tiles" data-day="{{day}}" data-zone="{{zone}}">
    <div class="tile"><span class="label">Engaged share</span><strong data-tile id="engaged-share">{{tiles['engaged-share']}}</strong><span class="hint">of live time tracked</span></div>
    <div class="tile"><span class="label">Time absent</span><strong data-tile id="absent">{{tiles['absent']}}</strong><span class="hint">hours:minutes</span></div>
    <div class="tile"><span class="label">Alerts raised</span><strong data-tile id="alerts">{{tiles['alerts']}}</strong><span class="hint">buzzer alerts</span></div>
    <div class="tile"><span class="label">Photos analysed</span><strong data-tile id="uploads">{{tiles['uploads']}}</strong><span class="hint">uploads today</span></div>
    <div class="tile"><span class="label">Now</span><strong class="small" id="now" data-live-state data-group="{{state.group if state else ''}}">{{state.level if state else 'no camera loop'}}</strong><span class="sr-only" role="status" data-announce-state></span><span class="hint">{{!'<a href="/glance">desk view</a>' if state else ''}}</span></div>
  </div>
  <div data-piece="bar" data-version="{{pieces['bar']['version']}}">{{!pieces['bar']['html']}}</div>
</section>
<section class="card">
  <h2>Last 14 days <span class="hint">(minutes per day)</span></h2>
  <div data-piece="days" data-version="{{pieces['days']['version']}}">{{!pieces['days']['html']}}</div>
</section>
<section class="card">
  <h2>Recent alerts <span class="hint">({{_t.strftime('%Z')}})</span></h2>
  <div data-piece="alerts" data-version="{{pieces['alerts']['version']}}">{{!pieces['alerts']['html']}}</div>
  <p><a href="/admin/alerts">All alerts</a> · <a href="/admin/log">Open the full log</a> · <a href="/admin/users">Users</a></p>
</section>
<script src="/static/dashboard.js"></script>
