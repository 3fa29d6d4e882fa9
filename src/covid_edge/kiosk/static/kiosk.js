// Live kiosk page: polls /api/v1/kiosk/latest and shows the newest frame `covid-edge kiosk`
// sent. Polling (not a push channel) so the page recovers by itself when the server restarts.
(function () {
  "use strict";
  const result = document.getElementById("result");
  const pollMs = Number(result.dataset.pollMs) || 1000;
  const el = function (id) { return document.getElementById(id); };
  let shownKey = "";
  let frameState = [];

  function percent(value) {
    if (value === null || value === undefined) { return "–"; }
    const p = value * 100;
    if (p >= 10) { return p.toFixed(1) + " %"; }
    if (p >= 1) { return p.toFixed(2) + " %"; }
    if (p >= 0.01) { return Number(p.toPrecision(2)) + " %"; }
    return "< 0.01 %";
  }

  function setState(state) {
    result.classList.remove("waiting", "positive", "negative", "finding", "rejected", "stale",
                            "offline");
    state.forEach(function (name) { result.classList.add(name); });
  }

  function showFrame(frame) {
    const positive = frame.verdict === frame.positive_label;
    const rejected = frame.verdict === result.dataset.notChestXray;
    el("verdict").textContent = frame.error ? "UNREADABLE" : String(frame.verdict).toUpperCase();
    // A long class name (PNEUMONIA) in the big type would not fit the panel.
    el("verdict").classList.toggle(
      "long", !rejected && !frame.error && el("verdict").textContent.length > 7);
    el("prob").hidden = rejected || Boolean(frame.error);
    el("prob-value").textContent = percent(frame.probability);
    el("prob-fill").style.width = ((frame.probability || 0) * 100).toFixed(2) + "%";
    showClasses(frame, rejected || Boolean(frame.error));
    const t = frame.threshold * 100;
    el("prob-marker").style.left = t.toFixed(2) + "%";
    const label = el("prob-threshold");
    label.style.left = t.toFixed(2) + "%";
    label.textContent = "threshold " + percent(frame.threshold);
    label.className = "threshold-label" + (t < 15 ? " at-start" : t > 85 ? " at-end" : "");
    el("latency").textContent = frame.total_ms === null ? "–" :
      (frame.latency_ms === null ? "" : frame.latency_ms.toFixed(1) + " ms inference · ") +
      frame.total_ms.toFixed(0) + " ms in all";
    el("model-line").textContent = frame.model.name + " " + frame.model.version + " (" +
      frame.model.variant + ") · " + frame.runtime;
    el("caption").textContent = "#" + frame.frame + " · " + frame.label + " · " + frame.source;
    // No picture (an unreadable frame): do not leave the previous frame's picture up.
    el("xray").hidden = !frame.preview_url;
    el("placeholder").hidden = Boolean(frame.preview_url);
    el("placeholder").textContent = "No picture for this frame";
    if (frame.preview_url) { el("xray").src = frame.preview_url; }
    if (frame.error) { return []; }
    if (rejected) { return ["rejected"]; }
    if (positive) { return ["positive"]; }
    // Another finding of a model with more than two classes (pneumonia) is not a calm green.
    const finding = (frame.labels || []).length > 2 && frame.verdict !== "normal";
    return [finding ? "finding" : "negative"];
  }

  // The other classes' bars (only on the page of a model of more than two classes).
  function showClasses(frame, hide) {
    const list = el("classes");
    if (!list) { return; }
    list.hidden = hide;
    const probabilities = frame.probabilities || {};
    list.querySelectorAll(".class-row").forEach(function (row) {
      const p = probabilities[row.dataset.label];
      row.querySelector(".class-value").textContent = percent(p);
      row.querySelector(".class-fill").style.width = ((p || 0) * 100).toFixed(2) + "%";
      row.classList.toggle("chosen", frame.verdict === row.dataset.label);
    });
  }

  function describeAge(frame, serverTime) {
    const age = Math.max(0, serverTime - frame.received_at);
    const staleAfter = Math.max(10, 3 * (frame.interval_s || 2));
    const ago = age < 2 ? "just now" : Math.round(age) + " s ago";
    if (frame.error) {
      return { text: "Frame " + frame.frame + " could not be read: " + frame.error, stale: false };
    }
    if (age > staleAfter) {
      return { text: "No new frame for " + Math.round(age) + " s: is covid-edge kiosk running?",
               stale: true };
    }
    if (frame.verdict === result.dataset.notChestXray) {
      return { text: "Frame " + frame.frame + ", " + ago + ": " + frame.reason +
               ". No verdict: the model only knows chest X-rays.", stale: false };
    }
    const other = frame.verdict !== frame.positive_label && (frame.labels || []).length > 2 ?
      "; " + frame.verdict + " is the most probable other class" : "";
    return { text: "Frame " + frame.frame + ", " + ago + ". P(" + frame.positive_label + ") " +
             (frame.verdict === frame.positive_label ? "at or above" : "below") +
             " the screening threshold" + other + ".", stale: false };
  }

  async function poll() {
    try {
      const response = await fetch("/api/v1/kiosk/latest", { cache: "no-store" });
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      const latest = await response.json();
      if (!latest.frame) {
        setState(["waiting"]);
      } else {
        // seq restarts with the server; with the arrival time it names one frame.
        const key = latest.seq + "@" + latest.frame.received_at;
        if (key !== shownKey) {
          shownKey = key;
          frameState = showFrame(latest.frame);
        }
        const state = frameState.slice();
        const age = describeAge(latest.frame, latest.server_time);
        el("status").textContent = age.text;
        if (age.stale) { state.push("stale"); }
        setState(state);
        result.dataset.seq = String(latest.seq);
      }
    } catch (err) {
      setState(["offline"]);
      el("status").textContent = "The covid-edge server is not reachable; retrying…";
    }
    window.setTimeout(poll, pollMs);
  }

  poll();
})();
