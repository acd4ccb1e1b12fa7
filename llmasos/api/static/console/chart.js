// A tiny line chart on a canvas: lineChart(canvas, [{label, color, points: [[t, y], ...]}]).
// No dependency; redraws the whole canvas each call (a few hundred points at most).
"use strict";

window.lineChart = function lineChart(canvas, series, unit) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = {l: 44, r: 8, t: 8, b: 18};
  ctx.clearRect(0, 0, w, h);
  const all = series.flatMap((s) => s.points);
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "#888";
  if (all.length === 0) {
    ctx.fillText("no data yet", w / 2 - 30, h / 2);
    return;
  }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const ymax = (Math.max(...all.map((p) => p[1])) || 1) * 1.1;
  const x = (t) => pad.l + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (w - pad.l - pad.r);
  const y = (v) => h - pad.b - (v / ymax) * (h - pad.t - pad.b);
  ctx.strokeStyle = "#ddd";
  ctx.beginPath();
  for (const f of [0, 0.5, 1]) {
    ctx.moveTo(pad.l, y(ymax * f / 1.1));
    ctx.lineTo(w - pad.r, y(ymax * f / 1.1));
    ctx.fillText((ymax * f / 1.1).toPrecision(3) + (unit || ""), 2, y(ymax * f / 1.1) + 4);
  }
  ctx.stroke();
  ctx.fillText(Math.round(t1 - t0) + "s", w - pad.r - 24, h - 4);
  series.forEach((s, i) => {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.beginPath();
    s.points.forEach((p, j) => (j ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
    ctx.stroke();
    if (s.dots) s.points.forEach((p) => ctx.fillRect(x(p[0]) - 2, y(p[1]) - 2, 4, 4));
    ctx.fillText(s.label, pad.l + 6 + i * 120, pad.t + 10);
  });
};
