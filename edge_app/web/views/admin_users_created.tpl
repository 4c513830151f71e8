% rebase('base.tpl', title=title)
<section class="card" id="class-created">
  <h1>{{len(made)}} student{{'' if len(made) == 1 else 's'}} created</h1>
  % if again:
  <p class="ok" role="status" id="sent-again">This list was sent again (a second click or a reload): nothing new was
    created. The same passwords as on the first answer:</p>
  % end
  <p class="error" id="shown-once"><strong>Shown only here, once:</strong> print this page (Ctrl+P) or copy the list
    now. Each student logs in with this password and then chooses their own; after a minute nobody can see these
    again (a forgotten one is reset on the Users page).</p>
  <p id="log-in-at">Log in at <strong>{{login_at}}</strong></p>
  <div class="table-wrap">
  <table id="class-passwords">
    <thead><tr><th scope="col">User name</th><th scope="col">First password</th></tr></thead>
    <tbody>
    % for u, password in made:
      <tr><td>{{u.username}}</td><td><code>{{password}}</code></td></tr>
    % end
    </tbody>
  </table>
  </div>
  <p><a href="/admin/users">Back to Users</a></p>
</section>
