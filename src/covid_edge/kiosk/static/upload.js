// Upload page: drag-and-drop onto the drop zone, a preview, and the size limit checked before
// anything is sent. Without JavaScript the plain form still works; the server checks it all again.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  const input = document.getElementById("file");
  const drop = document.getElementById("drop");
  const preview = document.getElementById("preview");
  const chosen = document.getElementById("chosen");
  const error = document.getElementById("error");
  const submit = document.getElementById("submit");
  const maxBytes = Number(form.dataset.maxBytes);
  const maxMb = form.dataset.maxMb;
  const accepted = ["image/png", "image/jpeg", "image/tiff", "image/bmp", "application/dicom"];
  let previewUrl = null;

  function showError(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  function reset() {
    input.value = "";
    preview.hidden = true;
    preview.removeAttribute("src");
    drop.classList.remove("has-file");
    chosen.textContent = "No file chosen yet.";
  }

  function megabytes(bytes) {
    if (bytes < 1024 * 1024) { return Math.max(1, Math.round(bytes / 1024)) + " kB"; }
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function fileChosen() {
    const file = input.files && input.files[0];
    if (previewUrl) { URL.revokeObjectURL(previewUrl); previewUrl = null; }
    if (!file) { reset(); return; }
    if (file.size > maxBytes) {
      reset();
      showError(file.name + " is " + megabytes(file.size) + ": over the " + maxMb +
                " MB limit. Downscale the image or save it as JPEG.");
      return;
    }
    if (file.type && !accepted.includes(file.type)) {
      reset();
      showError(file.name + " is not a PNG, JPEG, TIFF or DICOM image (" + file.type + ").");
      return;
    }
    showError("");
    chosen.textContent = file.name + " · " + megabytes(file.size);
    drop.classList.add("has-file");
    previewUrl = URL.createObjectURL(file);
    preview.onerror = function () {
      // Browsers do not display TIFF or DICOM; the server reads them all the same.
      preview.hidden = true;
      drop.classList.remove("has-file");
      document.getElementById("drop-text").querySelector("strong").textContent =
        "No preview for this file type";
    };
    preview.src = previewUrl;
    preview.hidden = false;
  }

  input.addEventListener("change", fileChosen);

  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (event) {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    drop.addEventListener(name, function () { drop.classList.remove("dragging"); });
  });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      fileChosen();
    }
  });

  form.addEventListener("submit", function (event) {
    if (!input.files || !input.files.length) {
      event.preventDefault();
      showError("Choose or drop an X-ray first.");
      return;
    }
    submit.disabled = true;
    submit.textContent = "Classifying…";
  });

  // Back from the prediction page: the browser may restore a disabled button.
  window.addEventListener("pageshow", function () {
    submit.disabled = false;
    submit.textContent = "Classify";
  });
})();
