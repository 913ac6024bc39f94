// Tessera heap explorer. Reads the film from <script id="data"> (written by
// tessera-viz's html.rs) and draws one 4 KiB page as 128 rows of 32 cells.
// No network, no libraries.
"use strict";
(function () {
  var D = JSON.parse(document.getElementById("data").textContent);
  var ROLES = D.roles, FRAMES = D.frames, PAGES = D.pages, ROWS = D.chunkrows;
  var $ = function (id) { return document.getElementById(id); };
  var state = { k: 0, page: null, pin: null, follow: true, diff: true };

  // ---- page data, decoded lazily -------------------------------------
  var decoded = {};
  function rolesOf(id) {
    var d = decoded[id] || (decoded[id] = {});
    if (!d.roles) {
      var out = new Uint8Array(4096), s = PAGES[id].roles, i = 0, at = 0;
      while (i < s.length) {
        var r = s.charCodeAt(i++) - 65, n = 0;
        while (i < s.length && s[i] >= "0" && s[i] <= "9") n = n * 10 + (s.charCodeAt(i++) - 48);
        out.fill(r, at, at + n); at += n;
      }
      d.roles = out;
    }
    return d.roles;
  }
  // A page version's bytes: in full (base64), or as patches to the
  // version it follows ("base"), or unknown (null).
  function bytesOf(id) {
    var d = decoded[id] || (decoded[id] = {});
    if (d.bytes === undefined) {
      var p = PAGES[id];
      if (p.base !== undefined) {
        var prev = p.base < 0 ? new Uint8Array(4096) : bytesOf(p.base);
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
  }
  function chunksOf(id) {
    var d = decoded[id] || (decoded[id] = {});
    if (!d.chunks) d.chunks = PAGES[id].chunks.map(function (n) { return ROWS[n]; });
    return d.chunks;
  }
  function chunkIndex(id) {
    var d = decoded[id] || (decoded[id] = {});
    if (!d.chunk) {
      var out = new Int32Array(4096).fill(-1), ch = chunksOf(id);
      for (var n = 0; n < ch.length; n++) {
        var lo = Math.max(0, ch[n].cell), hi = Math.min(4096, ch[n].cell + ch[n].size);
        for (var i = lo; i < hi; i++) out[i] = n;
      }
      d.chunk = out;
    }
    return d.chunk;
  }
  // The id of the view of page `addr` at frame k (null: not mapped/known).
  function pageAt(k, addr) {
    for (var j = k; j >= 0; j--) {
      var f = FRAMES[j];
      if (f.gone.indexOf(addr) >= 0) return null;
      if (Object.prototype.hasOwnProperty.call(f.pages, addr)) return f.pages[addr];
    }
    return null;
  }
  function pagesAt(k) {
    var all = {};
    for (var j = 0; j < FRAMES.length; j++) for (var a in FRAMES[j].pages) all[a] = 1;
    return Object.keys(all).filter(function (a) { return pageAt(k, a) !== null; })
      .sort(function (x, y) { return parseInt(x, 16) - parseInt(y, 16); });
  }
  // Address of cell i of the page at `page` (4096-aligned: the low three
  // hex digits are the offset).
  function cellAddr(page, i) { return page.slice(0, -3) + ("00" + i.toString(16)).slice(-3); }
  function hex(n, w) { var s = n.toString(16); while (s.length < (w || 0)) s = "0" + s; return s; }

  // ---- the grid, built once --------------------------------------------
  var grid = $("grid"), cells = [];
  (function build() {
    var frag = document.createDocumentFragment();
    var corner = document.createElement("div"); corner.className = "colh"; frag.appendChild(corner);
    for (var c = 0; c < 32; c++) {
      var h = document.createElement("div"); h.className = "colh";
      h.textContent = (c % 8 === 0 || c === 31) ? String(c) : ""; frag.appendChild(h);
    }
    for (var r = 0; r < 128; r++) {
      var lab = document.createElement("div"); lab.className = "lab"; lab.textContent = String(r * 32);
      lab.setAttribute("data-row", String(r)); frag.appendChild(lab);
      for (c = 0; c < 32; c++) {
        var el = document.createElement("div"); el.className = "c";
        el.setAttribute("data-cell", String(r * 32 + c)); frag.appendChild(el); cells.push(el);
      }
    }
    grid.appendChild(frag);
  })();

  function legend() {
    var html = "";
    ROLES.forEach(function (r) {
      if (r.foreign) return;
      html += '<span title="' + esc(r.meaning) + '"><span class="sw r-' + r.css + '">' + esc(r.glyph) + "</span>" + esc(r.name) + "</span>";
    });
    $("legend").innerHTML = html;
  }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; }); }

  // ---- rendering -------------------------------------------------------
  function render() {
    var f = FRAMES[state.k];
    $("slider").value = String(state.k);
    $("steplabel").textContent = (f.step === 0 && state.k === 0 ? "start" : "step " + f.step) + " · frame " + state.k + " of " + (FRAMES.length - 1);
    $("steptitle").textContent = f.title;
    $("stepnote").textContent = f.note;
    if (state.follow && f.focus && pageAt(state.k, f.focus) !== null) state.page = f.focus;
    var avail = pagesAt(state.k);
    if (state.page === null || avail.indexOf(state.page) < 0) state.page = avail.length ? avail[0] : null;
    var sel = $("pagesel");
    sel.innerHTML = avail.map(function (a) {
      var mark = (a === f.focus ? " · this step" : "") + (f.pages[a] !== undefined && state.k > 0 ? " · changed" : "");
      return '<option value="' + a + '"' + (a === state.page ? " selected" : "") + ">" + a + mark + "</option>";
    }).join("");
    drawPage();
    drawBins(f);
    drawHist(f);
  }

  function drawPage() {
    var id = state.page === null ? null : pageAt(state.k, state.page);
    if (id === null) {
      $("pagetitle").textContent = "(no page to show at this step)";
      cells.forEach(function (el) { el.className = "c r-outside"; el.textContent = ""; });
      $("chunks").innerHTML = "";
      return;
    }
    var roles = rolesOf(id), bytes = bytesOf(id), chunk = chunkIndex(id);
    var prevId = state.k > 0 ? pageAt(state.k - 1, state.page) : null;
    var proles = prevId === null ? null : rolesOf(prevId), pbytes = prevId === null ? null : bytesOf(prevId);
    var pin = state.pin && state.pin.page === state.page ? state.pin : null;
    var changed = 0;
    for (var i = 0; i < 4096; i++) {
      var r = ROLES[roles[i]], cls = "c r-" + r.css;
      if (i >= 32 && chunk[i] !== chunk[i - 32]) cls += " bt";
      if (i % 32 !== 0 && chunk[i] !== chunk[i - 1]) cls += " bl";
      if (state.k > 0 && state.diff && FRAMES[state.k].pages[state.page] !== undefined) {
        var ch = proles === null || proles[i] !== roles[i] || (bytes && pbytes && bytes[i] !== pbytes[i]);
        if (ch) { cls += " chg"; changed++; }
      }
      if (pin && chunk[i] >= 0 && chunksOf(id)[chunk[i]].addr === pin.chunk) cls += " pin";
      var el = cells[i];
      if (el.className !== cls) el.className = cls;
      if (el.textContent !== r.glyph) el.textContent = r.glyph;
    }
    $("pagetitle").textContent = "page " + state.page + " · cells 0..4095 · 128 rows × 32" +
      (bytes ? "" : " · bytes not captured") + (changed ? " · " + changed + " bytes changed at this step (outlined)" : "");
    var rows = "<tr><th>cell</th><th>address</th><th>size</th><th>head</th><th>kind</th><th>links</th></tr>";
    chunksOf(id).forEach(function (c) {
      var kind = c.kind + (c.req !== null ? ", asked " + c.req : "");
      var links = c.fields.map(function (f) { return f[0] + (f[0] === "index" ? "=" : "→") + f[1]; }).join(" ");
      rows += "<tr data-chunk=\"" + c.addr + "\"" + (pin && pin.chunk === c.addr ? ' class="sel"' : "") + "><td>" + c.cell + "</td><td>" + c.addr + "</td><td>" + c.size +
        "</td><td>" + esc(c.head) + "</td><td>" + esc(kind) + '</td><td class="links">' + esc(links) + "</td></tr>";
    });
    $("chunks").innerHTML = rows;
  }

  function describeCell(i) {
    var id = pageAt(state.k, state.page);
    if (id === null) return null;
    var roles = rolesOf(id), bytes = bytesOf(id), chunk = chunkIndex(id);
    var r = ROLES[roles[i]], c = chunk[i] >= 0 ? chunksOf(id)[chunk[i]] : null;
    var lines = [];
    lines.push("address  " + cellAddr(state.page, i));
    lines.push("cell     " + i + "  (row " + (i >> 5) + ", column " + (i & 31) + ")");
    lines.push("field    " + r.name + (c ? "  (byte " + (i - c.cell) + " of the chunk)" : ""));
    if (bytes) {
      var w = "", a = i & ~7;
      for (var k = 7; k >= 0; k--) w += hex(bytes[a + k], 2);
      var val = "value    0x" + hex(bytes[i], 2) + "  (word at " + cellAddr(state.page, a) + ": 0x" + w + ")";
      if (r.name === "head") {
        var lo = bytes[a], flags = [];
        if (lo & 1) flags.push("PINUSE"); if (lo & 2) flags.push("CINUSE"); if (lo & 4) flags.push("FLAG4");
        var word = BigInt("0x" + w), size = word & BigInt("0xfffffffffff8"), tag = word >> BigInt(48);
        val += "\n         size " + size.toString() + (flags.length ? " | " + flags.join(" | ") : "") +
          (tag ? " | tag 0x" + tag.toString(16) : "");
      }
      lines.push(val);
    } else {
      lines.push("value    (bytes not captured)");
    }
    if (c) lines.push("chunk    " + c.addr + ", " + c.size + " B, " + c.kind + (c.req !== null ? ", asked " + c.req : ""));
    else lines.push("chunk    none");
    lines.push("meaning  " + r.meaning);
    return lines.join("\n");
  }

  function pinCell(i) {
    var id = pageAt(state.k, state.page);
    if (id === null) return;
    var n = chunkIndex(id)[i];
    var addr = cellAddr(state.page, i);
    if (n < 0) {
      state.pin = null;
      $("pinned").textContent = addr + " is in no chunk: " + ROLES[rolesOf(id)[i]].name + ".";
    } else {
      var c = chunksOf(id)[n];
      state.pin = { page: state.page, chunk: c.addr };
      var links = c.fields.map(function (f) { return "  " + f[0] + (f[0] === "index" ? " = " : " → ") + f[1]; }).join("\n");
      $("pinned").textContent = addr + " is in the chunk at " + c.addr + "\n  size " + c.size + " B, head " + c.head +
        "\n  " + c.kind + (c.req !== null ? ", asked " + c.req + " B" : "") + "\n  user pointer 0x" + (BigInt(c.addr) + BigInt(16)).toString(16) + (links ? "\n" + links : "");
    }
    drawPage();
  }

  function find(text) {
    var t = text.trim().toLowerCase();
    if (!/^(0x)?[0-9a-f]+$/.test(t)) { $("pinned").textContent = "not an address: " + text; return false; }
    var v = BigInt(t.indexOf("0x") === 0 ? t : "0x" + t);
    var page = "0x" + (v & ~BigInt(4095)).toString(16);
    if (pageAt(state.k, page) === null) {
      $("pinned").textContent = "page " + page + " is not in this recording at this step.";
      return false;
    }
    state.follow = false; $("follow").checked = false;
    state.page = page; render();
    pinCell(Number(v & BigInt(4095)));
    return true;
  }

  function drawBins(f) {
    var b = f.bins, rows = "<tr><th>bin</th><th>sizes</th><th>chunks</th><th>bytes</th></tr>";
    b.small.forEach(function (s) { rows += "<tr><td>small " + s[0] + "</td><td>" + s[1] + "</td><td>" + s[2] + "</td><td>" + s[3] + "</td></tr>"; });
    b.tree.forEach(function (s) { rows += "<tr><td>tree " + s[0] + "</td><td>" + s[1] + "</td><td>" + s[2] + "</td><td>" + s[3] + "</td></tr>"; });
    rows += "<tr><td>dv</td><td colspan=3>" + (b.dv ? b.dv[1] + " B at " + b.dv[0] : "none") + "</td></tr>";
    rows += "<tr><td>top</td><td colspan=3>" + (b.top ? b.top[1] + " B at " + b.top[0] : "none") + "</td></tr>";
    $("bins").innerHTML = '<div>smallmap ' + b.smallmap + " · treemap " + b.treemap + "</div><table>" + rows + "</table>" +
      "<div>in use: " + b.inuse[0] + " chunks, " + b.inuse[1] + " B · direct: " + b.direct[0] + " · live blocks: " + f.live +
      "<br>footprint " + b.footprint[0] + " B (peak " + b.footprint[1] + " B)</div>";
  }

  function drawHist(f) {
    if (!f.hist.length) { $("hist").innerHTML = "<div>no free chunks outside top</div>"; return; }
    var max = Math.max.apply(null, f.hist.map(function (h) { return h[1]; }));
    $("hist").innerHTML = "<table>" + f.hist.map(function (h) {
      return "<tr><td>" + h[0] + "</td><td><span class=bar style=\"width:" + Math.max(2, Math.round(160 * h[1] / max)) + "px\"></span> " + h[1] + "</td></tr>";
    }).join("") + "</table>";
  }

  // ---- events ------------------------------------------------------------
  function go(k) { state.k = Math.max(0, Math.min(FRAMES.length - 1, k)); render(); }
  $("slider").max = String(FRAMES.length - 1);
  $("slider").addEventListener("input", function () { go(Number(this.value)); });
  $("prev").addEventListener("click", function () { go(state.k - 1); });
  $("next").addEventListener("click", function () { go(state.k + 1); });
  document.addEventListener("keydown", function (e) {
    if (e.target.tagName === "INPUT" && e.target.type !== "range") return;
    if (e.key === "ArrowLeft") { go(state.k - 1); e.preventDefault(); }
    if (e.key === "ArrowRight") { go(state.k + 1); e.preventDefault(); }
  });
  $("pagesel").addEventListener("change", function () {
    state.page = this.value; state.follow = false; $("follow").checked = false; drawPage();
  });
  $("follow").addEventListener("change", function () { state.follow = this.checked; render(); });
  $("showdiff").addEventListener("change", function () { state.diff = this.checked; drawPage(); });
  var hovered = null;
  grid.addEventListener("mouseover", function (e) {
    var a = e.target.getAttribute && e.target.getAttribute("data-cell");
    if (a === null || a === undefined) return;
    if (hovered) hovered.classList.remove("hov");
    hovered = e.target; hovered.classList.add("hov");
    $("hover").textContent = describeCell(Number(a)) || "";
  });
  grid.addEventListener("click", function (e) {
    var a = e.target.getAttribute && e.target.getAttribute("data-cell");
    if (a !== null && a !== undefined) pinCell(Number(a));
  });
  $("chunks").addEventListener("click", function (e) {
    var tr = e.target.closest("tr[data-chunk]");
    if (tr) find(tr.getAttribute("data-chunk"));
  });
  $("findform").addEventListener("submit", function (e) { e.preventDefault(); find($("find").value); });

  // ---- start: #step=K&page=0x..&at=0x..&pin=CELL&hover=CELL ----------------
  var params = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var p = kv.split("="); if (p[0]) params[p[0]] = p.length > 1 ? decodeURIComponent(p[1]) : "";
  });
  legend();
  go(params.step !== undefined ? Number(params.step) : (D.start || 0));
  if (params.page) { state.follow = false; $("follow").checked = false; state.page = params.page; render(); }
  if (params.at) find(params.at);
  if (params.pin !== undefined) pinCell(Number(params.pin));
  if (params.hover !== undefined) {
    var el = cells[Number(params.hover)];
    el.dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
  }

  // ---- self-test (#selftest): used by the headless browser test ------------
  if (params.selftest === undefined) return;
  var out = $("selftest"), passed = 0, failed = 0;
  function check(name, ok, why) {
    if (ok) passed++; else failed++;
    out.textContent += (ok ? "PASS " : "FAIL ") + name + (ok ? "" : ": " + why) + "\n";
  }
  function signature() { return cells.map(function (c) { return c.className + c.textContent; }).join("|"); }
  try {
    var labs = grid.querySelectorAll(".lab"), all = grid.querySelectorAll(".c");
    var numbered = all.length === 4096 && labs.length === 128;
    for (var i = 0; numbered && i < 4096; i++) numbered = all[i].getAttribute("data-cell") === String(i);
    for (var r = 0; numbered && r < 128; r++) numbered = labs[r].textContent === String(r * 32);
    check("grid has 128 rows x 32 cells numbered 0..4095", numbered, all.length + " cells, " + labs.length + " rows");
    check("every cell has a role", cells.every(function (c) { return / r-[a-z0-9]+/.test(c.className); }), "a cell without role");
    check("frames", FRAMES.length >= 2, FRAMES.length + " frames");
    var bad = [];
    PAGES.forEach(function (p, id) {
      var b = bytesOf(id);
      if (p.sum === undefined) { if (b !== null) bad.push(id); return; }
      var s = 0;
      for (var i = 0; i < 4096; i++) s = (Math.imul(s, 31) + (b[i] ^ i)) >>> 0;
      if (s !== p.sum) bad.push(id);
    });
    check("page bytes decode to their checksums", bad.length === 0, "pages " + bad.slice(0, 5).join(", "));
    go(0);
    var first = signature(), label0 = $("steptitle").textContent;
    var slider = $("slider"), differs = false;
    for (var k = 1; k < FRAMES.length && !differs; k++) {
      slider.value = String(k);
      slider.dispatchEvent(new Event("input", { bubbles: true }));
      differs = signature() !== first && $("steptitle").textContent !== label0 && state.k === k;
    }
    check("moving the slider changes the grid", differs, "grid unchanged over all frames");
    var head = cells.filter(function (c) { return / r-head/.test(c.className); })[0];
    check("a head byte is drawn", !!head, "no head cell");
    if (head) {
      head.dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
      var h = $("hover").textContent, addr = cellAddr(state.page, Number(head.getAttribute("data-cell")));
      check("hovering shows the byte's role", /field\s+head/.test(h), JSON.stringify(h));
      check("hovering shows the byte's address and value", h.indexOf(addr) >= 0 && /value\s+0x/.test(h), JSON.stringify(h));
      check("hovering shows the chunk", /chunk\s+0x[0-9a-f]+, \d+ B/.test(h), JSON.stringify(h));
      head.dispatchEvent(new MouseEvent("click", { bubbles: true }));
      check("clicking names the chunk holding the byte", /is in the chunk at 0x/.test($("pinned").textContent), $("pinned").textContent);
      check("clicking highlights the chunk", cells.some(function (c) { return / pin/.test(c.className); }), "no pinned cell");
      var target = cellAddr(state.page, Number(head.getAttribute("data-cell")));
      $("find").value = target;
      $("findform").dispatchEvent(new Event("submit", { cancelable: true }));
      check("the address box finds the chunk", $("pinned").textContent.indexOf(target + " is in") === 0, $("pinned").textContent);
    }
    check("the bins panel is drawn", /smallmap/.test($("bins").textContent) && /top/.test($("bins").textContent), $("bins").textContent);
    check("the histogram is drawn", $("hist").textContent.length > 0, "empty");
    check("no javascript errors", window.tesseraErrors.length === 0, window.tesseraErrors.join("; "));
  } catch (e) {
    check("self-test ran to the end", false, String(e && e.stack || e));
  }
  out.textContent += "DONE " + passed + " passed, " + failed + " failed\n";
})();
