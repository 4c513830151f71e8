% rebase('base.tpl', title=title)
% # GET /privacy: what this device keeps about a student and who sees it, written from its settings now
% # (web/privacy.py, about_page); every sentence is checked against the code that does it
<section class="card narrow" id="privacy-page">
  <h1>Your privacy at this desk</h1>
  <p>This desk has a camera. A program on this device looks at the face of whoever sits here and guesses how
    engaged they are from their facial expression: for example "Engaged" or "Distracted". This page says what is
    kept, for how long, and who can see it. It is written from this device's settings as they are now.</p>

  <h2>It is only a guess</h2>
  <p id="privacy-guess">The levels are a computer's guess from a facial expression, and it can be wrong. They say
    nothing about you as a person: not how clever you are, how hard you try or how you really feel.</p>

  <h2>What is kept, and for how long</h2>
  <ul id="privacy-kept">
    <li id="kept-photos"><strong>Photos you upload:</strong>
      % if keep == 'none':
      the photo itself is not kept. What was found in it is kept:
      % elif keep == 'thumbnail':
      a small copy of each photo is kept, and what was found in it:
      % else:
      each photo is kept (made smaller if it is very big), and what was found in it:
      % end
      each face, the feeling the program guessed, how sure it was, and the level. They are kept for {{days}},
      then deleted automatically.
      % if keep == 'none' and my_pictures:
      % # kept while the setting kept photos: they stay until deleted, whatever it says now
      <strong>Your earlier photos are still kept:</strong> {{my_pictures}} of the photos you uploaded while this
      device kept them {{'has its' if my_pictures == 1 else 'have their'}} picture kept, until
      {{'it is' if my_pictures == 1 else 'they are'}} deleted like the rest.
      % end
      </li>
    <li id="kept-states"><strong>What the desk shows:</strong> each time the level changes, the new level, the
      feeling the program guessed and how sure it was (for example "happiness, 81%"), and for each minute how long
      the desk spent at each level. Your name is not on them, but they are about whoever sat at the desk then. They
      are kept for {{days}}, then deleted automatically.</li>
    <li id="kept-alerts"><strong>Alerts:</strong> when the desk shows "Not engaged" or "Distracted" for
      {{alert_after}} seconds, an alert is kept with its time and level{{' and the desk may beep' if beeps else ''}}.
      % if snapshots:
      <strong>An admin has turned on pictures with alerts:</strong> each alert also keeps one picture from the
      camera, showing whoever sits at the desk.
      % elif frames_kept:
      % # turned off since: the frames taken before stay until their alerts go or an admin deletes them
      No picture from the camera is kept with new alerts. <strong>Pictures from before are still kept:</strong>
      an admin had turned pictures with alerts on, and {{frames_kept}} {{'picture' if frames_kept == 1 else 'pictures'}}
      from the camera, showing whoever sat at the desk then, {{'is' if frames_kept == 1 else 'are'}} still kept.
      % else:
      No picture from the camera is kept with it.
      % end
      Alerts are kept for {{days}}, then deleted automatically{{' (an admin can delete their pictures sooner)' if snapshots or frames_kept else ''}}.</li>
    <li id="kept-logins"><strong>Log-ins:</strong> when you last logged in, for as long as your account exists.
      While you are logged in, when you logged in and when you last opened a page (you can see where you are logged
      in on <a href="/account">your account</a>); this goes when you log out or your log-in runs out. A wrong password typed for your name is
      kept for a short time, with the address of the computer it came from, to stop people guessing passwords.</li>
    <li id="kept-audit"><strong>What admins do:</strong> when an admin makes or changes your account, or deletes
      your photos or your account, it is written in a list with your name, so that what admins do can be checked.
      This list is kept for {{audit_for}}.</li>
  </ul>
  % if waits:
  <p id="privacy-clock">{{clock_words}}</p>
  % end
  <p class="hint">The camera's other pictures are never kept: they are only looked at, then thrown away.</p>

  <h2>Who can see what</h2>
  <ul id="privacy-who">
    <li id="who-you"><strong>You</strong> and the admins can see your photos and what was found in them. Other
      students cannot.</li>
    <li id="who-admins"><strong>Admins</strong> can see the log (every level the desk showed, with the guessed
      feeling and how sure it was, and your photos' results{{' with their pictures' if keep != 'none' or my_pictures else ''}}),
      the alerts{{' and their pictures' if snapshots or frames_kept else ''}}, and the Users page: each student's last log-in and a
      summary of the photos they uploaded (how many, and how engaged the faces in them looked).</li>
    <li id="who-instructors"><strong>Teachers</strong> with an account here can see the level the desk shows now,
      and a chart of the desk's levels over the last minutes (up to an hour), also from before they logged in.
      % if classroom:
      % # the classroom page's tiles and alert list (fleet/classroom): the level alone undersold what a teacher sees
      They also see the desk's level on the classroom screen as it changes, how much of the last ten minutes the
      desk was engaged, and the desk listed under "Needs attention" once it has been "Not engaged" or "Distracted"
      for longer than the teacher chose there (2 minutes unless they change it).
      % end
    </li>
    <li id="who-students"><strong>Other students</strong> with an account here can see the level the desk shows
      now, also while you sit at it, and a chart of it from the time they logged in.</li>
    <li id="who-picture"><strong>The live camera picture</strong>
      % if picture_to_all:
      can be watched by everyone who logs in here, with the feeling the program guessed. It is shown, not kept.
      % else:
      can be watched by admins only. It is shown, not kept.
      % end
    </li>
  </ul>

  <h2>What leaves this device</h2>
  % # the log's download (/admin/log.csv, `engage-edge export`) and a backup (`engage-edge backup`) are files off the
  % # device: "results are only shown on this device's own pages" was untrue of both
  <p id="privacy-leaves">No picture is ever sent anywhere: not the camera's, not your photos. Pictures are only
    shown on this device's own pages, to the people above. The results are too, with two exceptions: an admin can
    save the log as a file (the levels, and your photos' results with your name, never a picture), and the school's
    technician can copy this device's records to keep them safe (a backup, with no picture in it).
  % if classroom:
    This desk is connected to the school's classroom server. It sends it only the desk's level when it changes,
    and how long each minute was at each level{{', with the feeling the program guessed' if with_emotion else ''}}:
    never a picture, never your name.</p>
  % else:
    This desk is not connected to the school's classroom server, so nothing about it is sent there.</p>
  % end

  <h2>Pausing the camera</h2>
  % if camera:
  <p id="privacy-pause">Press <strong>Pause camera</strong> at the top of any page. Then the camera is switched
    off and nothing is filmed or checked, {{('for %s minutes at most: then it comes back on by itself' % pause_limit) if pause_limit else 'until it is switched on again'}}.
    The desk shows "Paused", and "Paused" is kept in the log with its time, but not who pressed it. Only you, a
    teacher or an admin can switch it back on.{{' (A pause made with the button on the desk itself can be ended by anyone.)' if desk_button else ''}}</p>
  % else:
  <p id="privacy-pause">This device runs no camera right now, so there is nothing to pause.</p>
  % end

  <h2>Getting things deleted</h2>
  <p id="privacy-delete">You can delete your photos yourself at any time on the <a href="/upload">Upload</a> page,
    one by one or all at once. For anything else, ask your teacher or the admin.</p>
</section>
