"use strict";
(function () {
  var DATA = JSON.parse(document.getElementById("vae-data").textContent);
  var D = DATA.latent_dim, CLASSES = 10;
  var COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];

  function bytes(text) {
    var raw = atob(text), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  function floats(text) { return new Float32Array(bytes(text).buffer); }
  DATA.layers.forEach(function (layer) {
    if (layer.kernel) { layer.kernel = floats(layer.kernel); layer.bias = floats(layer.bias); }
    [layer.linear, layer.gate].forEach(function (part) {  // a gated layer's two dense halves
      if (part) { part.kernel = floats(part.kernel); part.bias = floats(part.bias); }
    });
  });

  function activate(values, activation) {
    if (activation === "relu") for (var i = 0; i < values.length; i++) if (values[i] < 0) values[i] = 0;
    if (activation === "tanh") for (var j = 0; j < values.length; j++) values[j] = Math.tanh(values[j]);
    if (activation === "sigmoid") for (var m = 0; m < values.length; m++) values[m] = 1 / (1 + Math.exp(-values[m]));
    return values;
  }
  function gated(x, layer) {  // (W x + b) * sigmoid(V x + c), model.py's gated hidden layer
    var linear = dense(x, layer.linear), gate = dense(x, layer.gate);
    for (var i = 0; i < linear.length; i++) linear[i] *= gate[i];
    return linear;
  }
  function dense(x, layer) {
    var units = layer.units, out = new Float32Array(units), w = layer.kernel;
    out.set(layer.bias);
    for (var i = 0; i < x.length; i++) {
      var xi = x[i];
      if (xi === 0) continue;
      for (var j = 0, row = i * units; j < units; j++) out[j] += xi * w[row + j];
    }
    return activate(out, layer.activation);
  }
  // Keras' Conv2DTranspose: input (h, w, cin), kernel (kh, kw, cout, cin); input pixel (i, j) adds its
  // kernel-weighted values to output (i * stride + a - pad, j * stride + b - pad).
  function convTranspose(x, layer) {
    var h = layer.in_shape[0], w = layer.in_shape[1], cin = layer.in_shape[2];
    var H = layer.out_shape[0], W = layer.out_shape[1], cout = layer.out_shape[2];
    var kh = layer.kernel_size[0], kw = layer.kernel_size[1], sh = layer.strides[0], sw = layer.strides[1];
    var k = layer.kernel, out = new Float32Array(H * W * cout);
    for (var i = 0; i < h; i++) for (var j = 0; j < w; j++) {
      var inBase = (i * w + j) * cin;
      for (var a = 0; a < kh; a++) {
        var oi = i * sh + a - layer.pad[0];
        if (oi < 0 || oi >= H) continue;
        for (var b = 0; b < kw; b++) {
          var oj = j * sw + b - layer.pad[1];
          if (oj < 0 || oj >= W) continue;
          var outBase = (oi * W + oj) * cout, kBase = (a * kw + b) * cout * cin;
          for (var co = 0; co < cout; co++) {
            var sum = 0, kRow = kBase + co * cin;
            for (var ci = 0; ci < cin; ci++) sum += x[inBase + ci] * k[kRow + ci];
            out[outBase + co] += sum;
          }
        }
      }
    }
    for (var p = 0; p < H * W; p++) for (var c = 0; c < cout; c++) out[p * cout + c] += layer.bias[c];
    return activate(out, layer.activation);
  }
  // The distribution's mean per pixel, as losses.pixel_means computes it.
  function mean(logit) {
    if (DATA.likelihood !== "continuous-bernoulli") return 1 / (1 + Math.exp(-logit));
    var x = logit / 2, series = DATA.mean_series, c = series.coefficients;
    if (Math.abs(logit) < series.below) {  // losses.pixel_means' series near 0, from the page's data
      var x2 = x * x;
      return 0.5 * (1 + x * (c[0] + x2 * (c[1] + x2 * c[2])));
    }
    return 0.5 * (1 + 1 / Math.tanh(x) - 1 / x);
  }
  function decodeWith(z, labelVector) {
    var x = new Float32Array(D + (DATA.conditional ? CLASSES : 0));
    x.set(z);
    if (DATA.conditional) x.set(labelVector, D);
    DATA.layers.forEach(function (layer) {
      if (layer.type === "dense") x = dense(x, layer);
      else if (layer.type === "gated_dense") x = gated(x, layer);
      else if (layer.type === "conv_transpose") x = convTranspose(x, layer);
      else if (layer.type === "activation") x = activate(x, layer.activation);
    });  // reshape: the flat (h, w, c) layout is already Keras' own
    var means = new Array(x.length);
    for (var i = 0; i < x.length; i++) means[i] = mean(x[i]);
    return means;
  }
  function oneHot(label) { var v = new Float32Array(CLASSES); v[label] = 1; return v; }
  function decode(z, label) { return decodeWith(z, DATA.conditional ? oneHot(label || 0) : null); }
  window.vaeDecode = function (z, label) {
    if (!z || z.length !== D) throw new Error("vaeDecode needs z with " + D + " numbers");
    return decode(Float32Array.from(z), label);
  };

  function draw(canvas, pixels) {  // 784 values in [0, 1]: dark digits on white, like the figures
    var small = document.createElement("canvas");
    small.width = small.height = 28;
    var ctx = small.getContext("2d"), image = ctx.createImageData(28, 28);
    for (var i = 0; i < 784; i++) {
      var grey = Math.round(255 * (1 - Math.min(1, Math.max(0, pixels[i]))));
      image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = grey;
      image.data[4 * i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    var big = canvas.getContext("2d");
    big.imageSmoothingEnabled = false;
    big.drawImage(small, 0, 0, canvas.width, canvas.height);
  }
  function digitCanvas(pixels, size, caption) {
    var c = document.createElement("canvas");
    c.width = c.height = size;
    if (caption) c.title = caption;
    draw(c, pixels);
    return c;
  }
  function showMessage(text) {
    var m = document.getElementById("message");
    m.textContent = text;
    m.hidden = !text;
  }

  // The plane: z = centre + a * u1 + b * u2 + offset (the sliders; zero for d <= 2).
  var centre = Float64Array.from(DATA.plane.centre), dirs = DATA.plane.directions.map(function (d) {
    return Float64Array.from(d);
  });
  var offset = new Float64Array(D), label = 0;
  function zAt(a, b) {  // the offset's part along the plane is dropped, so z projects onto (a, b)
    var along = [0, 0], z = new Float32Array(D);
    for (var j = 0; j < D; j++) { along[0] += offset[j] * dirs[0][j]; along[1] += offset[j] * dirs[1][j]; }
    for (var j = 0; j < D; j++) {
      z[j] = centre[j] + a * dirs[0][j] + b * dirs[1][j] +
             offset[j] - along[0] * dirs[0][j] - along[1] * dirs[1][j];
    }
    return z;
  }
  function project(z) {
    var a = 0, b = 0;
    for (var j = 0; j < D; j++) { a += (z[j] - centre[j]) * dirs[0][j]; b += (z[j] - centre[j]) * dirs[1][j]; }
    return [a, b];
  }

  var points = [];
  if (DATA.points) {
    var codes = floats(DATA.points.z_mean), imgs = bytes(DATA.points.images);
    var labels = DATA.points.labels ? bytes(DATA.points.labels) : null;
    for (var n = 0; n < DATA.points.count; n++) {
      var z = codes.slice(n * D, (n + 1) * D);
      points.push({z: z, plane: project(z), label: labels ? labels[n] : null,
                   image: Array.from(imgs.slice(n * 784, (n + 1) * 784), function (v) { return v / 255; })});
    }
  }
  // The axes cover the codes and the prior's central 99.7% (3 standard deviations around its projection).
  var prior = project(new Float32Array(D)), range = [[prior[0] - 3, prior[0] + 3], [prior[1] - 3, prior[1] + 3]];
  points.forEach(function (p) {
    for (var k = 0; k < 2; k++) { range[k][0] = Math.min(range[k][0], p.plane[k]); range[k][1] = Math.max(range[k][1], p.plane[k]); }
  });
  for (var k = 0; k < 2; k++) {  // a margin, so that no point sits on the edge
    var margin = 0.04 * (range[k][1] - range[k][0]);
    range[k][0] -= margin; range[k][1] += margin;
  }
  var planeCanvas = document.getElementById("plane"), S = planeCanvas.width;
  if (points.some(function (p) { return p.label !== null; })) {
    document.getElementById("legend").innerHTML = COLOURS.map(function (c, d) {
      return '<span style="color:' + c + '">&#9679; ' + d + '</span>';
    }).join(" ");
  }
  function toPixel(ab) {
    return [(ab[0] - range[0][0]) / (range[0][1] - range[0][0]) * S,
            D === 1 ? S / 2 : (1 - (ab[1] - range[1][0]) / (range[1][1] - range[1][0])) * S];
  }
  function fromPixel(x, y) {
    return [range[0][0] + x / S * (range[0][1] - range[0][0]),
            D === 1 ? 0 : range[1][0] + (1 - y / S) * (range[1][1] - range[1][0])];
  }
  document.getElementById("axes").textContent = "horizontal: " + DATA.plane.names[0] +
      (D === 1 ? "" : "; vertical: " + DATA.plane.names[1]) + (DATA.points ? "; points: z_mean of " +
      DATA.points.count + " of the " + DATA.points.of + " held-out images, coloured by digit" : "");

  var current = null, pinned = null, selected = [];
  function drawPlane() {
    var ctx = planeCanvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, S, S);
    ctx.strokeStyle = "#ddd";
    var origin = toPixel(prior);
    ctx.beginPath(); ctx.moveTo(origin[0], 0); ctx.lineTo(origin[0], S); ctx.moveTo(0, origin[1]); ctx.lineTo(S, origin[1]); ctx.stroke();
    points.forEach(function (p) {
      var xy = toPixel(p.plane);
      ctx.fillStyle = p.label === null ? "#1f77b4" : COLOURS[p.label];
      ctx.globalAlpha = 0.75;
      ctx.beginPath(); ctx.arc(xy[0], xy[1], 3, 0, 2 * Math.PI); ctx.fill();
    });
    ctx.globalAlpha = 1;
    selected.forEach(function (p) {
      var xy = toPixel(p.plane);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(xy[0], xy[1], 7, 0, 2 * Math.PI); ctx.stroke();
    });
    if (selected.length === 2) {
      var a = toPixel(selected[0].plane), b = toPixel(selected[1].plane);
      ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
    }
    if (current) {
      var c = toPixel(project(current));
      ctx.strokeStyle = "#d00"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(c[0] - 8, c[1]); ctx.lineTo(c[0] + 8, c[1]); ctx.moveTo(c[0], c[1] - 8); ctx.lineTo(c[0], c[1] + 8); ctx.stroke();
    }
    ctx.lineWidth = 1;
  }

  var zText = document.getElementById("z");
  function show(z) {  // decode z with the current label and draw it large
    current = Float32Array.from(z);
    var started = performance.now();
    var pixels = decode(current, label);
    window.explorer.decodeMs = performance.now() - started;
    window.explorer.z = Array.from(current);
    window.explorer.label = DATA.conditional ? label : null;
    window.explorer.pixels = pixels;
    if (pixels.some(function (v) { return isNaN(v); })) {
      showMessage("z is too far out for this decoder: its pixels overflow float32 and are not numbers");
    }
    draw(document.getElementById("digit"), pixels);
    zText.textContent = "[" + Array.from(current, function (v) { return v.toFixed(3); }).join(", ") + "]" +
        (DATA.conditional ? ", label " + label : "");
    zText.dataset.z = JSON.stringify(Array.from(current));
    drawPlane();
  }
  function setFromZ(z) {  // the sliders' offset (off the plane) that, with z's projection, gives exactly z
    var ab = project(z);
    for (var j = 0; j < D; j++) offset[j] = z[j] - centre[j] - ab[0] * dirs[0][j] - ab[1] * dirs[1][j];
    syncSliders();
    return z;
  }
  function pin(z) {
    pinned = Float32Array.from(z);
    var hash = "#z=" + Array.from(pinned, function (v) { return +v.toFixed(4); }).join(",") +
        (DATA.conditional ? "&label=" + label : "");
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  // One slider per latent dimension (d > 2): moves z off the plane along that dimension.
  var sliders = [];
  if (D > 2) {
    var box = document.getElementById("sliders");
    box.insertAdjacentHTML("beforeend", "<p>offset from the plane, per latent dimension:</p>");
    for (var j = 0; j < D; j++) (function (j) {
      var row = document.createElement("label"), input = document.createElement("input"), value = document.createElement("span");
      input.type = "range"; input.min = -3; input.max = 3; input.step = 0.01; input.value = 0;
      input.addEventListener("input", function () {
        var before = current || zAt(0, 0);
        offset[j] = +input.value;
        value.textContent = (+input.value).toFixed(2);
        var ab = project(before);
        show(zAt(ab[0], ab[1]));
      });
      row.append("z[" + j + "]", input, value);
      value.textContent = "0.00";
      box.append(row);
      sliders.push([input, value]);
    })(j);
  }
  function syncSliders() {
    sliders.forEach(function (s, j) { s[0].value = offset[j]; s[1].textContent = offset[j].toFixed(2); });
  }

  if (DATA.conditional) {
    var digits = document.getElementById("digits");
    digits.hidden = false;
    for (var d = 0; d < CLASSES; d++) (function (d) {
      var button = document.createElement("button");
      button.textContent = d;
      button.dataset.label = d;
      button.addEventListener("click", function () { setLabel(d); if (current) { show(current); if (pinned) pin(current); } });
      digits.append(button);
    })(d);
  }
  function setLabel(d) {
    label = d;
    document.querySelectorAll("#digits button").forEach(function (b) { b.classList.toggle("on", +b.dataset.label === d); });
  }

  function nearestPoint(x, y) {
    var best = null, bestDistance = 8 * 8;
    points.forEach(function (p) {
      var xy = toPixel(p.plane), dx = xy[0] - x, dy = xy[1] - y;
      if (dx * dx + dy * dy <= bestDistance) { best = p; bestDistance = dx * dx + dy * dy; }
    });
    return best;
  }
  function eventXY(event) {
    var rect = planeCanvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * S / rect.width, (event.clientY - rect.top) * S / rect.height];
  }
  planeCanvas.addEventListener("mousemove", function (event) {
    var xy = eventXY(event), ab = fromPixel(xy[0], xy[1]);
    show(zAt(ab[0], ab[1]));
  });
  planeCanvas.addEventListener("mouseleave", function () { if (pinned) show(pinned); });
  planeCanvas.addEventListener("click", function (event) {
    var xy = eventXY(event), p = nearestPoint(xy[0], xy[1]);
    if (!p) { var ab = fromPixel(xy[0], xy[1]); pin(zAt(ab[0], ab[1])); show(pinned); return; }
    selected = selected.length === 1 ? [selected[0], p] : [p];
    if (DATA.conditional && p.label !== null) setLabel(p.label);
    setFromZ(p.z);
    pin(p.z);
    show(p.z);
    showSelected();
  });
  function labelOf(p) { return DATA.conditional ? oneHot(p.label || 0) : null; }
  function showSelected() {
    var box = document.getElementById("selected");
    box.textContent = "";
    selected.forEach(function (p, i) {
      var div = document.createElement("div");
      div.append("held-out image " + (i + 1) + (p.label === null ? "" : " (digit " + p.label + ")") +
                 " and its reconstruction from z_mean:", document.createElement("br"));
      div.append(digitCanvas(p.image, 84, "the image"), digitCanvas(decodeWith(p.z, labelOf(p)), 84,
                 "its reconstruction, decoded from z_mean"));
      box.append(div);
    });
    var strip = document.getElementById("interpolation");
    strip.textContent = "";
    if (selected.length === 2) {
      strip.append("interpolation between them (straight line in z" + (DATA.conditional ? ", the label's one-hot too" : "") + "):");
      var row = document.createElement("div");
      for (var s = 0; s < 10; s++) {
        var t = s / 9, z = new Float32Array(D), y = DATA.conditional ? new Float32Array(CLASSES) : null;
        for (var j = 0; j < D; j++) z[j] = (1 - t) * selected[0].z[j] + t * selected[1].z[j];
        if (y) { var ya = labelOf(selected[0]), yb = labelOf(selected[1]); for (var c = 0; c < CLASSES; c++) y[c] = (1 - t) * ya[c] + t * yb[c]; }
        row.append(digitCanvas(decodeWith(z, y), 50));
      }
      strip.append(row);
    }
  }

  function gaussian() {  // Box-Muller
    var u = 1 - Math.random(), v = Math.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  if (DATA.prior) document.getElementById("sample").textContent = "draw z from " + DATA.prior.name;
  document.getElementById("sample").addEventListener("click", function () {
    var z = new Float32Array(D), prior = DATA.prior, k, j;
    if (prior) {  // a learned prior: a component k, then z ~ N(means_k, exp(log_vars_k))
      var means = floats(prior.means), logVars = floats(prior.log_vars);
      k = Math.floor(Math.random() * prior.components);
      for (j = 0; j < D; j++) z[j] = means[k * D + j] + Math.exp(0.5 * logVars[k * D + j]) * gaussian();
    } else {
      for (j = 0; j < D; j++) z[j] = gaussian();
    }
    setFromZ(z);
    pin(z);
    show(z);
  });

  function decoded(text) {  // a malformed escape (#z=%) is kept as typed, never thrown
    try { return decodeURIComponent(text); } catch (e) { return text; }
  }
  var FLOAT32_MAX = 3.4028234663852886e38;
  var START = D <= 2 ? "the origin" : "the point of the plane nearest the origin";
  function fromHash() {  // #z=0.5,-1.2&label=3
    var params = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var i = part.indexOf("=");
      if (i > 0) params[decoded(part.slice(0, i))] = decoded(part.slice(i + 1));
    });
    if (params.label !== undefined) {
      if (!DATA.conditional) { showMessage("this model is not conditional: the link's label=" + params.label + " is ignored"); }
      else if (!/^[0-9]$/.test(params.label)) { showMessage("label=" + params.label + " in the link is not a digit 0-9; showing label " + label); }
      else setLabel(+params.label);
    }
    if (params.z === undefined) return null;
    var values = params.z.split(",").map(function (v) { return v.trim() === "" ? NaN : Number(v); });
    // Beyond float32's range a number would decode to NaN pixels: it is no number for this decoder.
    if (values.length !== D || values.some(function (v) { return !isFinite(v) || Math.abs(v) > FLOAT32_MAX; })) {
      showMessage("the link's z=" + params.z + " is not " + D + " number" + (D === 1 ? "" : "s") +
                  " separated by commas (this model's z has " + D + " dimension" + (D === 1 ? "" : "s") +
                  ", each within float32's range); showing " + START + " instead");
      return null;
    }
    return Float32Array.from(values);
  }

  window.explorerPixelOf = function (n) { return toPixel(points[n].plane); };  // where point n is drawn
  window.explorer = {decodeMs: null, z: null, label: null, pixels: null, points: points.length};
  if (DATA.conditional) setLabel(0);
  if (!DATA.points) showMessage("this page has no held-out codes (the run's test images could not be encoded " +
                                "when it was written): the plane shows the prior's region only; evaluate.py RUN writes them");
  var start = fromHash();
  if (start) { setFromZ(start); pin(start); show(start); } else show(zAt(prior[0], prior[1]));
  window.addEventListener("hashchange", function () {
    var z = fromHash();
    if (z && (!pinned || z.some(function (v, j) { return Math.abs(v - pinned[j]) > 1e-4; }))) { showMessage(""); setFromZ(z); pinned = z; show(z); }
  });
  document.body.dataset.ready = "true";
})();
