% rebase('base.tpl', title=title)
<p><a href="{{'/admin/log?kind=upload' if user and user.is_admin else '/upload'}}" id="back">← Back to {{'the log' if user and user.is_admin else 'your photos'}}</a></p>
% include('result.tpl', result=result)
