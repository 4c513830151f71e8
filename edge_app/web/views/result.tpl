% # One analysed photo's results, on its own page (/uploads/<n>), where POST /upload leads
<section class="card results" id="results">
  <h1>Results for {{result['filename']}}</h1>
  % if result.get('when'):
  <p class="hint" id="result-when">Analysed {{result['when']}}{{(' for ' + result['owner']) if result.get('owner') else ''}}</p>
  % end
  <p class="hint">{{result['width']}} × {{result['height']}} pixels · {{len(result['faces'])}} face{{'' if len(result['faces']) == 1 else 's'}} found</p>
  % if result['preview'] and result.get('unsaved'):
  <p class="error" role="alert" id="not-saved">The photo itself was not kept: the device could not save it (its disk may be full, or its images folder cannot be written). What was found in it is stored; its picture is shown this once. Tell your teacher or an admin.{{(' (%s; the service\'s journal has the line.)' % result['unsaved']) if user is not None and user.is_admin else ''}}</p>
  % elif result['preview'] and not result.get('kept', True):
  <p class="hint" id="shown-once">The photo itself is not kept (privacy setting): its picture is shown this once, and this page shows only what was found in it from now on.</p>
  % end
  <div class="split">
    % if result['preview']:
    <img src="{{result['preview']}}" alt="The photo with the faces found marked and numbered" class="preview">
    % else:
    % if result.get('keeps_now'):
    <p class="hint" id="not-on-device">The photo itself is not on this device, only what was found in it: it was not kept when it was analysed (the privacy setting then), or the device could not save it.</p>
    % else:
    <p class="hint" id="not-kept">The photo itself was not kept (privacy setting), only what was found in it.</p>
    % end
    % end
    % if not result['faces']:
    <p class="empty" id="no-face">No face was found in this photo. Use a well-lit photo where the face looks at the camera and fills at least a twentieth of its width.</p>
    % else:
    <div class="table-wrap">
    <table id="faces">
      <caption class="sr-only">Faces found, one row each</caption>
      <thead><tr><th scope="col">#</th><th scope="col">Face</th><th scope="col">Emotion</th><th scope="col">Confidence</th><th scope="col">Engagement</th></tr></thead>
      <tbody>
      % for i, f in enumerate(result['faces'], 1):
        % group = f['engagement'].split(' - ')[0]
        <tr class="{{'uncertain' if f.get('uncertain') else ''}}">
          <td>{{i}}</td>
          % if result['thumbs']:
          <td><img class="face" src="{{result['thumbs'][i - 1]}}" alt="Face {{i}}" width="64" height="64"></td>
          % else:
          <td>Face {{i}}</td>
          % end
          <td><details><summary>{{('unsure (maybe ' + f['emotion'] + ')') if f.get('uncertain') else f['emotion']}}</summary>
            <ul class="probs" aria-label="All emotion probabilities for face {{i}}">
            % for label, p in sorted(f['probabilities'].items(), key=lambda kv: -kv[1]):
              <li><span class="bar"><span class="fill w{{int(round(p * 20)) * 5}}"></span></span>{{label}} {{'%.1f' % (p * 100)}}%</li>
            % end
            </ul></details></td>
          <td>{{'%.0f' % (f['confidence'] * 100)}}%</td>
          <td><span class="pill g-{{group.replace(' ', '-').lower()}}">{{f['engagement']}}</span>
            % if f.get('uncertain'):
            <span class="hint">the emotion is too unsure to count</span>
            % end
          </td>
        </tr>
      % end
      </tbody>
    </table>
    </div>
    <p class="hint" id="state-meaning">A computer's guess from a facial expression at one moment: it can be wrong, and it is not a judgement of anyone.</p>
    % end
  </div>
</section>
