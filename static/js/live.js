// Live dashboards: fetch the page's JSON, update cards in place, redraw charts with Plotly.react.
// Polls every data-live-interval seconds (at most 15) only while the tab is visible, like Healthchecks'
// adaptive-setinterval: a hidden tab stops polling, and becoming visible refreshes at once.
(function () {
  "use strict";

  const root = document.querySelector("[data-live-url]");
  if (!root) return;
  const intervalMs = Math.min(15, Math.max(1, Number(root.dataset.liveInterval) || 15)) * 1000;
  // The range the server accepted (the query string's, or the default after a malformed one); charts get it too.
  const query = root.dataset.rangeQuery || "";
  const stamp = root.querySelector("[data-live-stamp]");
  const plotConfig = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
  let lastOk = Date.now();
  let busy = false;

  function withQuery(url) {
    return query ? url + (url.indexOf("?") >= 0 ? "&" : "?") + query : url;
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin",
                                        cache: "no-store", redirect: "error" });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) throw new Error((body && body.detail) || ("HTTP " + response.status));
    return body;
  }

  function setStamp(text) {
    if (stamp) stamp.textContent = text;
  }

  function applyFields(data) {
    const stale = new Set(data.stale || []);
    root.querySelectorAll("[data-live]").forEach(function (el) {
      const key = el.dataset.live;
      if (!(key in data.fields)) return;
      const value = data.fields[key];
      if (el.dataset.liveAttr) {
        el.setAttribute(el.dataset.liveAttr, value);
      } else if (el.textContent !== value) {
        el.textContent = value;
        el.classList.remove("changed");
        void el.offsetWidth;  // restart the highlight animation
        el.classList.add("changed");
      }
      el.classList.toggle("is-stale", stale.has(key));
    });
  }

  function applyAlerts(alerts) {
    const list = root.querySelector("[data-live-alerts]");
    if (!list) return;
    const items = alerts.length ? alerts : [{ level: "none", text: list.dataset.emptyText, url: "" }];
    list.replaceChildren.apply(list, items.map(function (a) {
      const li = document.createElement("li");
      li.className = "alert alert-" + a.level;
      if (a.url) {
        const link = document.createElement("a");
        link.href = a.url;
        link.textContent = a.text;  // text, never HTML: names come from users
        li.appendChild(link);
      } else {
        li.textContent = a.text;
      }
      return li;
    }));
  }

  function applyNewSites(ids) {
    const notice = root.querySelector("[data-live-new]");
    if (!notice || !ids) return;
    const shown = new Set(Array.from(root.querySelectorAll("[data-site-id]"), function (el) {
      return Number(el.dataset.siteId);
    }));
    const added = ids.filter(function (id) { return !shown.has(id); }).length;
    notice.hidden = added === 0;
    notice.textContent = added ? added + " new site(s): reload the page to see their cards." : "";
  }

  async function drawChart(el) {
    try {
      const fig = await getJSON(withQuery(el.dataset.chartUrl));
      if (!window.Plotly) throw new Error("the chart library did not load");
      await window.Plotly.react(el, fig.data, fig.layout, plotConfig);
      el.dataset.state = fig.meta && fig.meta.empty ? "empty" : "drawn";
      el.classList.remove("is-stale");
      el.removeAttribute("data-error");
    } catch (err) {
      // Keep the last drawing, grey it out and say why; never throw to the console.
      el.classList.add("is-stale");
      el.dataset.error = "Chart not updated: " + err.message;
      el.dataset.state = el.dataset.state || "error";
    }
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const data = await getJSON(root.dataset.liveUrl);
      applyFields(data);
      applyAlerts(data.alerts || []);
      applyNewSites(data.site_ids);
      await Promise.all(Array.from(root.querySelectorAll("[data-chart-url]"), drawChart));
      lastOk = Date.now();
      root.classList.remove("is-stale");
      setStamp("Updated " + new Date(data.updated_at).toLocaleTimeString() + " · refreshes every " +
               intervalMs / 1000 + " s while this tab is visible");
    } catch (err) {
      if (Date.now() - lastOk > 2 * intervalMs) root.classList.add("is-stale");
      setStamp("Not updated since " + new Date(lastOk).toLocaleTimeString() + " (" + err.message + "), retrying");
    } finally {
      busy = false;
      root.dataset.refreshes = String(Number(root.dataset.refreshes || 0) + 1);
    }
  }

  // Adaptive interval: poll while visible; stop when hidden; refresh immediately on return.
  let timer = null;
  function start() {
    if (timer === null) timer = window.setInterval(refresh, intervalMs);
  }
  function stop() {
    if (timer !== null) window.clearInterval(timer);
    timer = null;
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      stop();
    } else {
      refresh();
      start();
    }
  });

  // The range selector: presets apply at once, "custom" reveals its two inputs.
  document.querySelectorAll("[data-range-select]").forEach(function (select) {
    select.addEventListener("change", function () {
      const custom = select.form.querySelector("[data-custom-range]");
      if (select.value === "custom") {
        if (custom) custom.hidden = false;
      } else {
        select.form.submit();
      }
    });
  });

  // First drawing of the charts right away, then the live loop.
  Promise.all(Array.from(root.querySelectorAll("[data-chart-url]"), drawChart));
  if (!document.hidden) start();
})();
