// Prediction page: "Show where the model looked". The verdict is shown at once; the heatmap
// (about 170 inferences: half a second on a desktop, seconds on a Raspberry Pi) is computed
// only when asked for. The page carries the model's own input pixels (uploads are not kept on
// the server) and sends them to /api/v1/explain; the button then toggles X-ray and heatmap in
// the same frame.
(function () {
  "use strict";
  const button = document.getElementById("explain");
  if (!button) { return; }
  const xray = document.getElementById("xray");
  const heatmap = document.getElementById("heatmap");
  const caption = document.getElementById("caption");
  const legend = document.getElementById("heatmap-caption");
  const cost = document.getElementById("heatmap-cost");
  const status = document.getElementById("explain-status");
  let state = "none";  // none, loading, shown, hidden

  function showStatus(text, isError) {
    status.textContent = text;
    status.hidden = !text;
    status.classList.toggle("error", Boolean(isError));
  }

  function showHeatmap(on) {
    heatmap.hidden = !on;
    xray.hidden = on;
    legend.hidden = !on;
    caption.hidden = on;
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Show the X-ray" : "Show where the model looked";
    state = on ? "shown" : "hidden";
    showStatus(on ? status.dataset.meaning : "", false);
  }

  function inputFile() {
    const dataUrl = button.dataset.input;
    const bytes = atob(dataUrl.slice(dataUrl.indexOf(",") + 1));
    const array = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i += 1) { array[i] = bytes.charCodeAt(i); }
    return new File([array], "model-input.png", { type: "image/png" });
  }

  async function load() {
    state = "loading";
    button.disabled = true;
    button.textContent = "Looking… (" + button.dataset.cost + " inferences)";
    showStatus("", false);
    try {
      const form = new FormData();
      form.append("file", inputFile());
      const response = await fetch("/api/v1/explain?format=json&view=overlay",
                                   { method: "POST", body: form, cache: "no-store" });
      const body = await response.json();
      if (!response.ok) { throw new Error(body.error || "HTTP " + response.status); }
      await new Promise(function (resolve, reject) {
        heatmap.onload = resolve;
        heatmap.onerror = function () { reject(new Error("the heatmap did not decode")); };
        heatmap.src = body.image_url;
      });
      cost.textContent = body.inferences + " inferences, " +
        Math.round(body.elapsed_ms) + " ms";
      showHeatmap(true);
    } catch (err) {
      state = "none";
      button.textContent = "Show where the model looked";
      showStatus("No heatmap: " + err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  button.addEventListener("click", function () {
    if (state === "none") { load(); } else if (state !== "loading") {
      showHeatmap(state !== "shown");
    }
  });
})();
