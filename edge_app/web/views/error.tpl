% rebase('base.tpl', title=title)
<section class="card narrow">
  <h1>{{title}}</h1>
  <p role="alert">{{message}}</p>
  % if get('home', True):
  <p><a href="/">Back to the start page</a></p>
  % end
</section>
