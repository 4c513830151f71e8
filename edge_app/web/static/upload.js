// A photo larger than the device accepts is refused here, before it is sent (the upload form's
// data-max-bytes, the server's own limit): over school Wi-Fi a 40 MB file took minutes to
// send, and the device, which reads no more than its limit of a body, then closed the
// connection, so the browser showed "connection reset" instead of why.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = form.querySelector("input[type=file]");
  const most = Number(form.dataset.maxBytes);
  form.addEventListener("submit", function (e) {
    const file = input && input.files && input.files[0];
    if (!file || !(most > 0) || file.size <= most) return;
    e.preventDefault();  // before the pages' own "a form is on its way" listeners see it: nothing is sent
    let said = document.getElementById("upload-error");
    if (!said) {  // the same place and words as the server's refusal
      said = document.createElement("p");
      said.id = "upload-error";
      said.className = "error";
      said.setAttribute("role", "alert");
      form.before(said);
    }
    said.textContent = "Not analysed: the photo is " + (file.size / 1e6).toFixed(1) + " MB; the limit is " +
      Math.floor(most / 1048576) + " MB. Choose a smaller photo, or save it smaller first. " + form.dataset.accepted;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", "upload-error");
    input.focus();
  });
})();
