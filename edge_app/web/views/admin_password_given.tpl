% rebase('base.tpl', title=title)
% # POST /admin/users/<id>/password with no password typed: the generated one, on this answer only
<section class="card narrow" id="password-given">
  <h1>New password for {{target.username}}</h1>
  <p class="ok" role="status">Their sessions ended. They log in with this password and then choose their own.</p>
  <p class="error" id="shown-once"><strong>Shown only here, once:</strong> write it down or print this page (Ctrl+P)
    now. A lost one is reset again on the Users page.</p>
  <p id="log-in-at">Log in at <strong>{{login_at}}</strong></p>
  <div class="table-wrap">
  <table id="given-password">
    <thead><tr><th scope="col">User name</th><th scope="col">New password</th></tr></thead>
    <tbody><tr><td>{{target.username}}</td><td><code>{{password}}</code></td></tr></tbody>
  </table>
  </div>
  <p><a href="/admin/users{{query}}">Back to Users</a></p>
</section>
