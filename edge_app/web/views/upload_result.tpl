% rebase('base.tpl', title=title)
% # someone else's photo is reached from the admin's log; one's own from the upload page (an admin's too)
% back_to_log = get('from_log', False)
<p><a href="{{'/admin/log?kind=upload' if back_to_log else '/upload'}}" id="back">← Back to {{'the log' if back_to_log else 'your photos'}}</a></p>
% if get('done'):
<p class="ok" role="status" id="result-done">{{done}}</p>
% end
% include('result.tpl', result=result)
<section class="card" id="delete-upload">
  <details>
    <summary>Delete this photo</summary>
    <p class="hint">The photo{{' (as kept)' if result['preview'] else ''}}, the faces found in it and their results are deleted from this device now, instead of automatically after {{days_kept}}. This cannot be undone.</p>
    <form method="post" action="/uploads/{{result['id']}}/delete">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <button type="submit" class="danger" id="delete-upload-button">Delete it for good</button>
    </form>
  </details>
</section>
