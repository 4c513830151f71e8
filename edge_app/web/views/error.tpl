% rebase('base.tpl', title=title)
<section class="card narrow">
  <h1>{{title}}</h1>
  <p role="alert">{{message}}</p>
  <p><a href="/">Back to the start page</a></p>
</section>
