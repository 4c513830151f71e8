% rebase('layout.tpl', title=title)
<section class="card narrow"><h1>{{title}}</h1><p>{{message}}</p>
% if get('home', False):
<p><a href="/">Back to the classroom</a></p>
% end
</section>
