// Tessera's three heaps: one step slider, three grids (Tessera, dlmalloc,
// glibc). Reads the comparison from <script id="data"> (written by
// tessera-compare's html.rs). Each heap's pages are stored as the
// explorer stores them: page versions (patches to the version before),
// interned chunk rows, and per frame the versions that changed.
"use strict";
(function () {
  var D = JSON.parse(document.getElementById("data").textContent);
  var ROLES = D.roles, STEPS = D.steps, HEAPS = D.heaps;
  var $ = function (id) { return document.getElementById(id); };
  var state = { k: 0, diff: true };
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; }); }
  function hex(n, w) { var s = n.toString(16); while (s.length < (w || 0)) s = "0" + s; return s; }
  function cellAddr(page, i) { return page.slice(0, -3) + ("00" + i.toString(16)).slice(-3); }

  // ---- one heap's page data, decoded lazily ---------------------------------
  function Heap(h, index) {
    this.h = h; this.index = index; this.decoded = {}; this.page = null; this.cells = [];
  }
  Heap.prototype.d = function (id) { return this.decoded[id] || (this.decoded[id] = {}); };
  Heap.prototype.roles = function (id) {
    var d = this.d(id);
    if (!d.roles) {
      var out = new Uint8Array(4096), s = this.h.pages[id].roles, i = 0, at = 0;
      while (i < s.length) {
        var r = s.charCodeAt(i++) - 65, n = 0;
        while (i < s.length && s[i] >= "0" && s[i] <= "9") n = n * 10 + (s.charCodeAt(i++) - 48);
        out.fill(r, at, at + n); at += n;
      }
      d.roles = out;
    }
    return d.roles;
  };
  Heap.prototype.bytes = function (id) {
    var d = this.d(id);
    if (d.bytes === undefined) {
      var p = this.h.pages[id];
      if (p.base !== undefined) {
        var prev = p.base < 0 ? new Uint8Array(4096) : this.bytes(p.base);
        if (prev === null) { d.bytes = null; } else {
          var out = prev.slice();
          p.patch.forEach(function (pt) {
            for (var k = 0; k < pt[1].length; k += 2) out[pt[0] + k / 2] = parseInt(pt[1].substr(k, 2), 16);
          });
          d.bytes = out;
        }
      } else if (p.bytes === null) { d.bytes = null; } else {
        var bin = atob(p.bytes), full = new Uint8Array(bin.length);
        for (var i = 0; i < bin.length; i++) full[i] = bin.charCodeAt(i);
        d.bytes = full;
      }
    }
    return d.bytes;
  };
  Heap.prototype.chunks = function (id) {
    var d = this.d(id), rows = this.h.chunkrows;
    if (!d.chunks) d.chunks = this.h.pages[id].chunks.map(function (n) { return rows[n]; });
    return d.chunks;
  };
  Heap.prototype.chunkIndex = function (id) {
    var d = this.d(id);
    if (!d.chunk) {
      var out = new Int32Array(4096).fill(-1), ch = this.chunks(id);
      for (var n = 0; n < ch.length; n++) {
        var lo = Math.max(0, ch[n].cell), hi = Math.min(4096, ch[n].cell + ch[n].size);
        for (var i = lo; i < hi; i++) out[i] = n;
      }
      d.chunk = out;
    }
    return d.chunk;
  };
  Heap.prototype.pageAt = function (k, addr) {
    for (var j = k; j >= 0; j--) {
      var f = this.h.frames[j];
      if (f.gone.indexOf(addr) >= 0) return null;
      if (Object.prototype.hasOwnProperty.call(f.pages, addr)) return f.pages[addr];
    }
    return null;
  };
  Heap.prototype.pagesAt = function (k) {
    var all = {}, self = this;
    for (var j = 0; j <= k; j++) for (var a in this.h.frames[j].pages) all[a] = 1;
    return Object.keys(all).filter(function (a) { return self.pageAt(k, a) !== null; })
      .sort(function (x, y) { return parseInt(x, 16) - parseInt(y, 16); });
  };

  // ---- the panels, built once -------------------------------------------------
  var heaps = HEAPS.map(function (h, i) { return new Heap(h, i); });
  heaps.forEach(function (H) {
    var sec = document.createElement("section");
    sec.className = "heap"; sec.id = "heap-" + H.index;
    sec.innerHTML = "<h2>" + esc(H.h.name) + "</h2><div class=about>" + esc(H.h.about) + "</div>" +
      "<label class=pagesel>page <select></select></label><div class=pagetitle></div><div class=grid role=grid></div>" +
      "<div class=hover>Hover over a byte.</div><h3>Chunks on this page</h3><table class=chunks></table>" +
      "<h3>Bins</h3><table class=bins></table><div class=notes></div>";
    $("heaps").appendChild(sec);
    H.sec = sec;
    var grid = sec.querySelector(".grid"), frag = document.createDocumentFragment();
    var corner = document.createElement("div"); corner.className = "colh"; frag.appendChild(corner);
    for (var c = 0; c < 32; c++) {
      var hd = document.createElement("div"); hd.className = "colh";
      hd.textContent = (c % 8 === 0 || c === 31) ? String(c) : ""; frag.appendChild(hd);
    }
    for (var r = 0; r < 128; r++) {
      var lab = document.createElement("div"); lab.className = "lab"; lab.textContent = String(r * 32); frag.appendChild(lab);
      for (c = 0; c < 32; c++) {
        var el = document.createElement("div"); el.className = "c";
        el.setAttribute("data-cell", String(r * 32 + c)); frag.appendChild(el); H.cells.push(el);
      }
    }
    grid.appendChild(frag);
    grid.addEventListener("mouseover", function (e) {
      var a = e.target.getAttribute && e.target.getAttribute("data-cell");
      if (a === null || a === undefined) return;
      sec.querySelector(".hover").textContent = describe(H, Number(a));
    });
    sec.querySelector("select").addEventListener("change", function () { H.page = this.value; H.pinned = true; draw(H); });
  });
  (D.missing || []).forEach(function (m) { $("missing").innerHTML += "<p>left out: " + esc(m) + "</p>"; });
  (function legend() {
    var html = "";
    ROLES.forEach(function (r) {
      html += '<span title="' + esc(r.meaning) + '"><span class="sw r-' + r.css + '">' + esc(r.glyph) + "</span>" + esc(r.name) + "</span>";
    });
    $("legend").innerHTML = html;
  })();

  function describe(H, i) {
    var id = H.page === null ? null : H.pageAt(state.k, H.page);
    if (id === null) return "";
    var r = ROLES[H.roles(id)[i]], bytes = H.bytes(id), n = H.chunkIndex(id)[i];
    var c = n >= 0 ? H.chunks(id)[n] : null, lines = [];
    lines.push("address " + cellAddr(H.page, i) + " · cell " + i);
    lines.push("field   " + r.name + (c ? " (byte " + (i - c.cell) + " of the chunk)" : ""));
    if (bytes) {
      var w = "", a = i & ~7;
      for (var k = 7; k >= 0; k--) w += hex(bytes[a + k], 2);
      lines.push("value   0x" + hex(bytes[i], 2) + " (word 0x" + w + ")");
    }
    if (c) lines.push("chunk   " + c.addr + ", " + c.size + " B, " + c.kind + (c.note ? "\n≠       " + c.note : ""));
    lines.push("meaning " + r.meaning);
    return lines.join("\n");
  }

  // ---- rendering ----------------------------------------------------------------
  function draw(H) {
    var k = state.k, f = H.h.frames[k];
    var avail = H.pagesAt(k);
    if (!H.pinned && f.focus && H.pageAt(k, f.focus) !== null) H.page = f.focus;
    if (H.page === null || avail.indexOf(H.page) < 0) { H.page = avail.length ? avail[0] : null; H.pinned = false; }
    H.sec.querySelector("select").innerHTML = avail.map(function (a) {
      return '<option value="' + a + '"' + (a === H.page ? " selected" : "") + ">" + a + (a === f.focus ? " · this step" : "") + "</option>";
    }).join("");
    var id = H.page === null ? null : H.pageAt(k, H.page);
    var title = H.sec.querySelector(".pagetitle"), table = H.sec.querySelector(".chunks");
    if (id === null) {
      title.textContent = "(no heap yet)";
      H.cells.forEach(function (el) { el.className = "c r-outside"; el.textContent = ""; });
      table.innerHTML = "";
    } else {
      var roles = H.roles(id), bytes = H.bytes(id), chunk = H.chunkIndex(id), rows = H.chunks(id);
      var prevId = k > 0 ? H.pageAt(k - 1, H.page) : null;
      var proles = prevId === null ? null : H.roles(prevId), pbytes = prevId === null ? null : H.bytes(prevId);
      var changedHere = k > 0 && f.pages[H.page] !== undefined, changed = 0, marked = 0;
      for (var i = 0; i < 4096; i++) {
        var r = ROLES[roles[i]], cls = "c r-" + r.css;
        if (i >= 32 && chunk[i] !== chunk[i - 32]) cls += " bt";
        if (i % 32 !== 0 && chunk[i] !== chunk[i - 1]) cls += " bl";
        if (changedHere && (proles === null || proles[i] !== roles[i] || (bytes && pbytes && bytes[i] !== pbytes[i]))) { cls += " chg"; changed++; }
        if (state.diff && chunk[i] >= 0 && rows[chunk[i]].note) { cls += " dif"; marked++; }
        var el = H.cells[i];
        if (el.className !== cls) el.className = cls;
        if (el.textContent !== r.glyph) el.textContent = r.glyph;
      }
      title.textContent = "page " + H.page + (changed ? " · " + changed + " bytes changed (red)" : "") + (marked ? " · differences (orange)" : "");
      var html = "<tr><th></th><th>cell</th><th>size</th><th>kind</th><th>head</th><th>links</th></tr>";
      rows.forEach(function (c) {
        var links = c.fields.map(function (x) { return x[0] + (x[0] === "index" ? "=" : "→") + x[1]; }).join(" ");
        var kind = c.kind + (c.req !== null ? ", asked " + c.req : "");
        html += "<tr" + (c.note && state.diff ? ' class="diff" title="' + esc(c.note) + '"' : "") + "><td class=mark>" + (c.note ? "≠" : "") + "</td><td>" + c.cell +
          "</td><td>" + c.size + "</td><td>" + esc(kind) + (c.note && state.diff ? "<br>≠ " + esc(c.note) : "") + "</td><td>" + esc(c.head) + "</td><td>" + esc(links) + "</td></tr>";
      });
      table.innerHTML = html;
    }
    var b = "<tr><th>bin</th><th>sizes</th><th>chunks</th><th>bytes</th></tr>";
    f.bins.forEach(function (x) { b += "<tr><td>" + esc(x[0]) + "</td><td>" + esc(x[1]) + "</td><td>" + x[2] + "</td><td>" + x[3] + "</td></tr>"; });
    H.sec.querySelector(".bins").innerHTML = b;
    H.sec.querySelector(".notes").innerHTML = f.notes.map(function (n) { return "<p>" + esc(n) + "</p>"; }).join("");
  }

  function render() {
    var s = STEPS[state.k];
    $("slider").value = String(state.k);
    $("steplabel").textContent = state.k === 0 ? "start" : "step " + state.k + " of " + (STEPS.length - 1);
    $("steptitle").textContent = s.title;
    $("stepnote").textContent = s.note;
    $("diffs").innerHTML = s.diffs.map(function (d) { return "<li>" + esc(d) + "</li>"; }).join("");
    heaps.forEach(draw);
  }

  function go(k) { state.k = Math.max(0, Math.min(STEPS.length - 1, k)); render(); }
  $("slider").max = String(STEPS.length - 1);
  $("slider").addEventListener("input", function () { go(Number(this.value)); });
  $("prev").addEventListener("click", function () { go(state.k - 1); });
  $("next").addEventListener("click", function () { go(state.k + 1); });
  $("showdiff").addEventListener("change", function () { state.diff = this.checked; render(); });
  document.addEventListener("keydown", function (e) {
    if (e.target.tagName === "INPUT" && e.target.type !== "range") return;
    if (e.key === "ArrowLeft") { go(state.k - 1); e.preventDefault(); }
    if (e.key === "ArrowRight") { go(state.k + 1); e.preventDefault(); }
  });

  // ---- start: #step=K&hover=HEAP:CELL ----------------------------------------
  var params = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var p = kv.split("="); if (p[0]) params[p[0]] = p.length > 1 ? decodeURIComponent(p[1]) : "";
  });
  go(params.step !== undefined ? Number(params.step) : 0);
  if (params.hover) {
    var hv = params.hover.split(":"), H0 = heaps[Number(hv[0])];
    if (H0) H0.cells[Number(hv[1])].dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
  }

  // ---- self-test (#selftest): used by the headless browser test --------------
  if (params.selftest === undefined) return;
  var out = $("selftest"), passed = 0, failed = 0;
  function check(name, ok, why) {
    if (ok) passed++; else failed++;
    out.textContent += (ok ? "PASS " : "FAIL ") + name + (ok ? "" : ": " + why) + "\n";
  }
  function signature(H) { return H.cells.map(function (c) { return c.className + c.textContent; }).join("|"); }
  try {
    check("three heaps are drawn", heaps.length === 3 && document.querySelectorAll(".heap").length === 3, heaps.length + " heaps");
    var shaped = heaps.every(function (H) {
      var labs = H.sec.querySelectorAll(".lab"), all = H.sec.querySelectorAll(".c");
      var ok = all.length === 4096 && labs.length === 128;
      for (var i = 0; ok && i < 4096; i++) ok = all[i].getAttribute("data-cell") === String(i);
      return ok;
    });
    check("each grid has 128 rows x 32 cells numbered 0..4095", shaped, "a grid of another shape");
    var bad = 0;
    heaps.forEach(function (H) {
      H.h.pages.forEach(function (p, id) {
        var b = H.bytes(id);
        if (p.sum === undefined) return;
        var s = 0;
        for (var i = 0; i < 4096; i++) s = (Math.imul(s, 31) + (b[i] ^ i)) >>> 0;
        if (s !== p.sum) bad++;
      });
    });
    check("page bytes decode to their checksums", bad === 0, bad + " pages");
    go(0);
    var first = heaps.map(signature), moved = heaps.map(function () { return false; });
    for (var k = 1; k < STEPS.length; k++) {
      $("slider").value = String(k);
      $("slider").dispatchEvent(new Event("input", { bubbles: true }));
      heaps.forEach(function (H, i) { if (signature(H) !== first[i]) moved[i] = true; });
    }
    check("moving the slider changes all three grids", moved.every(Boolean) && state.k === STEPS.length - 1, JSON.stringify(moved));
    var diffStep = -1;
    for (k = 1; k < STEPS.length && diffStep < 0; k++) {
      go(k);
      if (document.querySelectorAll(".heap tr.diff").length && document.querySelectorAll(".c.dif").length && $("diffs").children.length) diffStep = k;
    }
    check("differences are marked (chunk rows, bytes and the step's list)", diffStep > 0, "no step marks a difference");
    heaps.forEach(function (H) {
      var head = H.cells.filter(function (c) { return / r-head/.test(c.className); })[0];
      if (!head) { check(H.h.name + ": a head byte is drawn", false, "none"); return; }
      head.dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
      var t = H.sec.querySelector(".hover").textContent;
      check(H.h.name + ": hovering shows the byte's role", /field\s+head/.test(t) && /chunk\s+0x/.test(t), JSON.stringify(t));
    });
    check("each heap has a bins panel", heaps.every(function (H) { return /top/.test(H.sec.querySelector(".bins").textContent); }), "a bins panel without top");
    check("glibc's tcache is drawn", HEAPS.length < 3 || HEAPS[2].chunkrows.some(function (c) { return /tcache/.test(c.kind); }), "no tcache chunk");
    check("no javascript errors", window.tesseraErrors.length === 0, window.tesseraErrors.join("; "));
  } catch (e) {
    check("self-test ran to the end", false, String(e && e.stack || e));
  }
  out.textContent += "DONE " + passed + " passed, " + failed + " failed\n";
})();
