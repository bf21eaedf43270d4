// The interactive map's behaviour (nnmanifold.interactive inlines it into the page).
const fig = JSON.parse(document.getElementById('nnm-figure').textContent);
const D = JSON.parse(document.getElementById('nnm-data').textContent);
const gd = document.getElementById('nnm-map');
const {scale: SCALE, palette: PALETTE, missing: MISSING, missing_colour: GREY} = D.style;
let current = {map: 'phate', selected: -1};

function stepped(colours) {
  const n = colours.length;
  return colours.flatMap((c, i) => [[i / n, c], [(i + 1) / n, c]]);
}
function marker(name) {
  const c = D.colours[name];
  const base = {size: 7, opacity: 0.85, line: {width: 0}, color: c.values, showscale: true};
  if (c.kind === 'numeric') {
    return {...base, colorscale: SCALE, colorbar: {title: {text: c.log ? 'log10 ' + name : name}}};
  }
  const n = c.levels.length;
  const colours = c.levels.map((l, i) => l === MISSING ? GREY : PALETTE[i % PALETTE.length]);
  return {...base, colorscale: stepped(colours), cmin: -0.5, cmax: n - 0.5,
    colorbar: {title: {text: name}, tickvals: [...Array(n).keys()], ticktext: c.levels}};
}
function cell(row, text, differs) {
  const td = row.insertCell();
  td.textContent = text;
  if (differs) td.className = 'differs';
  return td;
}
function show(i) {
  current.selected = i;
  const panel = document.getElementById('nnm-selected');
  const m = D.maps[current.map];
  if (i < 0) { panel.hidden = true; Plotly.restyle(gd, {x: [[]], y: [[]]}, [1]); return; }
  const values = fig.data[0].customdata[i];
  const id = values[0];
  document.getElementById('nnm-id').textContent = id;
  document.getElementById('nnm-files').textContent = D.results + '/models/' + id + '/';
  const attrs = document.getElementById('nnm-attrs');
  attrs.replaceChildren();
  D.fields.forEach((f, j) => { if (j > 0) { const r = attrs.insertRow(); cell(r, f); cell(r, values[j]); } });
  const near = (m.neighbours[i] || []).filter(j => j >= 0);
  const table = document.getElementById('nnm-neighbours');
  table.replaceChildren();
  const head = table.insertRow();
  ['model', 'map distance', 'accuracy', ...D.varying.map(h => D.fields[h])].forEach(t => {
    const th = document.createElement('th'); th.textContent = t; head.appendChild(th); });
  near.forEach(j => {
    const r = table.insertRow();
    const v = fig.data[0].customdata[j];
    const link = cell(r, v[0]);
    link.className = 'pick'; link.dataset.index = j; link.title = 'select this network';
    cell(r, Math.hypot(m.x[j] - m.x[i], m.y[j] - m.y[i]).toPrecision(3));
    cell(r, v[1]);
    D.varying.forEach(h => cell(r, v[h], v[h] !== values[h]));
  });
  document.getElementById('nnm-near-title').textContent =
    near.length + ' nearest on the ' + (current.map === 'phate' ? 'diffusion' : 'Wasserstein') + ' map';
  panel.hidden = false;
  const pts = [i, ...near].filter(j => m.x[j] !== null);
  Plotly.restyle(gd, {x: [pts.map(j => m.x[j])], y: [pts.map(j => m.y[j])],
    'marker.line.color': [pts.map((_, k) => k === 0 ? '#000' : '#666')]}, [1]);
}

fig.data[0].x = D.maps.phate.x;
fig.data[0].y = D.maps.phate.y;
fig.data[0].marker = marker(D.initial);
Plotly.newPlot(gd, fig.data, fig.layout, {responsive: true, displaylogo: false}).then(() => {
  // when the plot is built, and when it is on screen (for tests and bench/interactive.py)
  window.nnmRendered = performance.now();
  requestAnimationFrame(() => { window.nnmPainted = performance.now(); });
  gd.on('plotly_click', ev => {
    const p = ev.points.find(q => q.curveNumber === 0);
    if (p) show(p.pointNumber);
  });
});
document.getElementById('nnm-colour').addEventListener('change', e =>
  Plotly.restyle(gd, {marker: [marker(e.target.value)]}, [0]));
document.getElementById('nnm-which').addEventListener('change', e => {
  current.map = e.target.value;
  const m = D.maps[current.map];
  Plotly.update(gd, {x: [m.x], y: [m.y]}, {'xaxis.autorange': true, 'yaxis.autorange': true}, [0]);
  // placed networks exist on the diffusion map only
  if (gd.data.length > 2) Plotly.restyle(gd, {visible: current.map === 'phate'}, [2]);
  if (current.selected >= 0) show(m.x[current.selected] !== null ? current.selected : -1);
});
document.getElementById('nnm-neighbours').addEventListener('click', e => {
  if (e.target.classList.contains('pick')) show(Number(e.target.dataset.index));
});
