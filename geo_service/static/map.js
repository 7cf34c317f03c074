/* The world map of human rights cities and territories: the browser side of /map and /embed.
 *
 * Everything shown comes from the page's JSON config and our own vector tiles. Names and other
 * data are only ever put into the page as text (textContent, setAttribute), never as HTML, and
 * links only keep http(s) addresses. */
(function () {
  "use strict";

  // Leaflet.VectorGrid 1.3.0 still calls L.DomEvent.fakeStop, which Leaflet 1.8 removed.
  if (!L.DomEvent.fakeStop) {
    L.DomEvent.fakeStop = function () { return true; };
  }

  // The view in the URL keeps fractional zooms (leaflet-hash 0.2.1 reads whole ones only), to
  // two decimals, with the centre to about a pixel.
  if (L.Hash) {
    L.Hash.prototype.parseHash = function (hash) {
      var found = /^#?(\d+(?:\.\d+)?)\/(-?\d+(?:\.\d+)?)\/(-?\d+(?:\.\d+)?)$/.exec(hash);
      return found ? {center: L.latLng(parseFloat(found[2]), parseFloat(found[3])),
                      zoom: parseFloat(found[1])} : false;
    };
    L.Hash.prototype.formatHash = function (map) {
      var centre = map.getCenter(), zoom = map.getZoom();
      var digits = Math.max(1, Math.ceil(Math.log(Math.max(zoom, 1)) / Math.LN2));
      return "#" + [Math.round(zoom * 100) / 100, centre.lat.toFixed(digits),
                    centre.lng.toFixed(digits)].join("/");
    };
  }

  // Leaflet.markercluster 1.5.3 builds its levels from the floor of the map's minimum zoom but
  // walks them from the minimum zoom itself: with a fractional minimum (the world once across,
  // below) the markers of its top level were never shown. Walk from the floor too.
  if (L.MarkerCluster) {
    var walk = L.MarkerCluster.prototype._recursively;
    L.MarkerCluster.prototype._recursively = function (bounds, start, stop, every, bottom) {
      return walk.call(this, bounds, Math.floor(start), stop, every, bottom);
    };
  }

  // Leaflet 1.9.4's GridLayer.redraw takes the map's zoom as the tiles' zoom without rounding it:
  // at a fractional zoom (a filter changed, the base redrawn) it asked for tiles at z=2.69.
  // Round it, as GridLayer._setView does.
  L.GridLayer.prototype.redraw = function () {
    if (this._map) {
      this._removeAllTiles();
      var tileZoom = this._clampZoom(Math.round(this._map.getZoom()));
      if (tileZoom !== this._tileZoom) {
        this._tileZoom = tileZoom;
        this._updateLevels();
      }
      this._update();
    }
    return this;
  };

  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  function format(template, n) { return template.replace("{n}", String(n)); }

  /* A div icon whose element carries its accessible name (markers and clusters alike). */
  var LabelledIcon = L.DivIcon.extend({
    createIcon: function (old) {
      var node = L.DivIcon.prototype.createIcon.call(this, old);
      node.setAttribute("aria-label", this.options.label);
      node.setAttribute("title", this.options.label);
      return node;
    }
  });

  function safeUrl(url) {
    try {
      var parsed = new URL(url, window.location.href);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (e) { return null; }
  }

  function link(url, label) {
    var href = safeUrl(url);
    if (!href) { return el("span", {text: label}); }
    return el("a", {href: href, target: "_blank", rel: "noopener noreferrer", text: label});
  }

  /* A marker symbol: colour = commitment kind, shape = kind of government (SVG, so the legend
   * uses the very same drawing). */
  function symbol(shape, colour, size) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", size); svg.setAttribute("height", size);
    svg.setAttribute("viewBox", "0 0 20 20"); svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var node;
    if (shape === "square") {
      node = document.createElementNS(SVG, "rect");
      node.setAttribute("x", "3"); node.setAttribute("y", "3");
      node.setAttribute("width", "14"); node.setAttribute("height", "14");
    } else if (shape === "diamond") {
      node = document.createElementNS(SVG, "polygon"); node.setAttribute("points", "10,1 19,10 10,19 1,10");
    } else if (shape === "triangle") {
      node = document.createElementNS(SVG, "polygon"); node.setAttribute("points", "10,2 19,18 1,18");
    } else {
      node = document.createElementNS(SVG, "circle");
      node.setAttribute("cx", "10"); node.setAttribute("cy", "10"); node.setAttribute("r", "8");
    }
    node.setAttribute("fill", colour); node.setAttribute("stroke", "#1d1d1b");
    node.setAttribute("stroke-width", "1.5");
    svg.appendChild(node);
    return svg;
  }

  function readFilters(config) {
    var params = new URLSearchParams(window.location.search);
    var filters = {};
    ["theme", "section", "kind", "commitment_kind", "year"].forEach(function (name) {
      var value = params.get(name) || config.filters[name] || "";
      filters[name] = value;
    });
    return filters;
  }

  function writeFilters(filters) {
    var params = new URLSearchParams(window.location.search);
    Object.keys(filters).forEach(function (name) {
      if (filters[name]) { params.set(name, filters[name]); } else { params.delete(name); }
    });
    var query = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") +
                                window.location.hash);
  }

  function matches(t, filters) {
    return (!filters.theme || t.themes.indexOf(filters.theme) >= 0) &&
      (!filters.section || t.sections.indexOf(filters.section) >= 0) &&
      (!filters.kind || t.kind === filters.kind) &&
      (!filters.commitment_kind || t.commitment_kind === filters.commitment_kind) &&
      (!filters.year || (t.joined !== null && t.joined <= Number(filters.year)));
  }

  /* The year each milestone (10, 100, 1000 members) was reached, from the members' joining
   * years, or null while it is not. */
  function milestoneYears(territories, milestones) {
    var years = territories.map(function (t) { return t.joined; })
      .filter(function (y) { return y !== null && y !== undefined; }).sort(function (a, b) { return a - b; });
    return milestones.map(function (n) { return [n, years.length >= n ? years[n - 1] : null]; });
  }

  /* The timeline: a slider from the first member's year to 2030 (its end means every year),
   * with play. The slider is a native range input (arrow keys, Home, End); its value is
   * announced with the count shown; play steps a year at a time, or, when the reader asks
   * for reduced motion, goes straight to the end. */
  function timeline(config, filters, onChange) {
    var s = config.strings;
    var known = config.territories.map(function (t) { return t.joined; })
      .filter(function (y) { return y !== null && y !== undefined; });
    var first = known.length ? Math.min.apply(null, known) : config.years[0];
    var last = config.years[1];
    var id = "hr-filter-year";
    var slider = el("input", {id: id, type: "range", min: String(first), max: String(last), step: "1",
                              list: "hr-milestone-years"});
    var output = el("output", {"for": id, "class": "hr-year-value"});
    var reached = milestoneYears(config.territories, config.milestones);
    var ticks = el("datalist", {id: "hr-milestone-years"});
    var notes = el("ul", {"class": "hr-milestones", "aria-label": s.milestones});
    reached.forEach(function (pair) {
      if (pair[1] !== null) { ticks.appendChild(el("option", {value: String(pair[1]), label: String(pair[0])})); }
      notes.appendChild(el("li", {text: s.milestone.replace("{n}", pair[0])
                                          .replace("{year}", pair[1] !== null ? pair[1] : s.not_yet)}));
    });
    var play = el("button", {type: "button", "class": "hr-play", "aria-pressed": "false", text: s.play});
    var timer = null;
    function show() {
      var all = Number(slider.value) >= last;
      output.textContent = all ? s.all_years : slider.value;
      slider.setAttribute("aria-valuetext", all ? s.all_years : slider.value);
    }
    function set(value) {
      slider.value = value ? String(Math.max(first, Math.min(last, Number(value)))) : String(last);
      show();
    }
    function changed() {
      show();
      onChange("year", Number(slider.value) >= last ? "" : slider.value);
    }
    function stop() {
      if (timer) { clearInterval(timer); timer = null; }
      play.setAttribute("aria-pressed", "false");
      play.textContent = s.play;
    }
    slider.addEventListener("input", function () { stop(); changed(); });
    play.addEventListener("click", function () {
      if (timer) { stop(); return; }
      var reduce = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      if (reduce) { slider.value = String(last); changed(); return; }
      if (Number(slider.value) >= last) { slider.value = String(first); changed(); }
      play.setAttribute("aria-pressed", "true");
      play.textContent = s.pause;
      timer = setInterval(function () {
        if (Number(slider.value) >= last) { stop(); return; }
        slider.value = String(Number(slider.value) + 1);
        changed();
      }, 700);
    });
    set(filters.year);
    var label = el("label", {"for": id}, [document.createTextNode(s.timeline + ": "), output]);
    var node = el("div", {"class": "hr-field hr-timeline"}, [label, slider, ticks, play, notes]);
    return {node: node, set: set};
  }

  function formatArea(km2, lang) {
    if (km2 === null || km2 === undefined) { return ""; }
    var digits = km2 < 10 ? 1 : 0;
    return new Intl.NumberFormat(lang, {maximumFractionDigits: digits, minimumFractionDigits: digits})
      .format(km2) + "\u00a0km²";
  }

  // How many screen pixels across a territory's boundary is at a zoom (the side of a square of
  // its area, at its latitude in Web Mercator): below MIN_SHAPE_PX its marker stands for it alone.
  var MIN_SHAPE_PX = 8;
  var OUTLINE_BELOW_ZOOM = 6;  // outline only below: a world map of filled shapes is a blur
  function shapePixels(t, zoom) {
    if (!t.shape || !t.shape.area_km2) { return 0; }
    var metresPerPixel = 40075016.686 * Math.cos(t.lat * Math.PI / 180) / (256 * Math.pow(2, zoom));
    return Math.sqrt(t.shape.area_km2) * 1000 / metresPerPixel;
  }

  function popupContent(t, config) {
    var s = config.strings;
    var rows = [
      [s.country, t.country_name],
      [s.kind, config.kinds[t.kind] || t.kind],
      [s.commitment_kind, (config.commitments[t.commitment_kind] || t.commitment_kind) +
        (t.commitment ? " — " + t.commitment : "")],
      [s.year, t.year ? String(t.year) : "—"],
      [s.themes, t.themes.map(function (slug) { return config.themes[slug] || slug; }).join(", ") || "—"],
      [s.confidence, s[t.confidence] || t.confidence],
      [s.placed, s[t.placed] || t.placed]
    ];
    if (t.shape) {  // the boundary it is drawn with: level, area, source
      rows.push([s.boundary, [config.levels[t.shape.level] || t.shape.level,
                              formatArea(t.shape.area_km2, config.lang), t.shape.source]
        .filter(Boolean).join(" · ")]);
    }
    var dl = el("dl", {"class": "hr-facts"});
    rows.forEach(function (row) {
      dl.appendChild(el("dt", {text: row[0]}));
      dl.appendChild(el("dd", {text: row[1]}));
    });
    var box = el("div", {"class": "hr-popup", lang: config.lang}, [
      el("h2", {text: t.name}),
      t.local_name && t.local_name !== t.name ? el("p", {"class": "hr-local", text: t.local_name}) : null,
      dl
    ]);
    var year = Number(config.state.year || 0);  // the timeline's year: initiatives by then
    var initiatives = t.initiatives.filter(function (i) { return !year || (i.year && i.year <= year); });
    if (initiatives.length) {
      var list = el("ul", {"class": "hr-initiatives"});
      initiatives.forEach(function (i) {
        var item = el("li", {}, [el("span", {text: i.title + (i.year ? " (" + i.year + ")" : "")})]);
        if (i.source && safeUrl(i.source)) {
          item.appendChild(document.createTextNode(" "));
          item.appendChild(link(i.source, s.source));
        }
        list.appendChild(item);
      });
      box.appendChild(el("h3", {text: s.initiatives}));
      box.appendChild(list);
    }
    var sources = t.sources.filter(safeUrl);
    if (sources.length || (t.website && safeUrl(t.website))) {
      var links = el("p", {"class": "hr-sources"}, [el("span", {text: s.sources + ": "})]);
      sources.forEach(function (url, index) {
        if (index) { links.appendChild(document.createTextNode(" · ")); }
        links.appendChild(link(url, new URL(url).hostname));
      });
      if (t.website && safeUrl(t.website)) {
        if (sources.length) { links.appendChild(document.createTextNode(" · ")); }
        links.appendChild(link(t.website, s.website));
      }
      box.appendChild(links);
    }
    return box;
  }

  function markerFor(t, config) {
    var colour = config.colours[t.commitment_kind] || "#777777";
    var shape = config.shapes[t.kind] || "circle";
    var holder = el("span", {"class": "hr-symbol"}, [symbol(shape, colour, 20)]);
    var label = t.name + ", " + t.country_name + " — " + (config.kinds[t.kind] || t.kind) + ", " +
      (config.commitments[t.commitment_kind] || t.commitment_kind);
    var icon = new LabelledIcon({html: holder, className: "hr-marker", iconSize: [20, 20],
                                 iconAnchor: [10, 10], popupAnchor: [0, -8], label: label});
    var marker = L.marker([t.lat, t.lon], {icon: icon, title: label, alt: label, keyboard: true,
                                           riseOnHover: true});
    marker.bindPopup(function () { return popupContent(t, config); }, {maxWidth: 320, autoPanPadding: [24, 24]});
    marker.territory = t;
    return marker;
  }

  function legendControl(config, closed) {
    var Legend = L.Control.extend({
      options: {position: "bottomleft"},
      onAdd: function () {
        var s = config.strings;
        var box = el("section", {"class": "hr-legend leaflet-bar", "aria-label": s.legend});
        var details = el("details", config.embed || closed ? {} : {open: ""}, [el("summary", {text: s.legend})]);
        var colours = el("ul", {"aria-label": s.colour_by});
        Object.keys(config.commitments).forEach(function (key) {
          colours.appendChild(el("li", {}, [symbol("circle", config.colours[key], 14),
                                             el("span", {text: config.commitments[key]})]));
        });
        var shapes = el("ul", {"aria-label": s.shape_by});
        Object.keys(config.kinds).forEach(function (key) {
          shapes.appendChild(el("li", {}, [symbol(config.shapes[key], "#ffffff", 14),
                                            el("span", {text: config.kinds[key]})]));
        });
        details.appendChild(el("p", {"class": "hr-legend-head", text: s.colour_by}));
        details.appendChild(colours);
        details.appendChild(el("p", {"class": "hr-legend-head", text: s.shape_by}));
        details.appendChild(shapes);
        box.appendChild(details);
        L.DomEvent.disableClickPropagation(box);
        L.DomEvent.disableScrollPropagation(box);
        return box;
      }
    });
    return new Legend();
  }

  function fullscreenIcon() {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", "18"); svg.setAttribute("height", "18"); svg.setAttribute("viewBox", "0 0 18 18");
    svg.setAttribute("aria-hidden", "true"); svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG, "path");
    path.setAttribute("d", "M2 7V2h5M11 2h5v5M16 11v5h-5M7 16H2v-5");
    path.setAttribute("fill", "none"); path.setAttribute("stroke", "#1d1d1b"); path.setAttribute("stroke-width", "2");
    svg.appendChild(path);
    return svg;
  }

  function fullscreenControl(map, config) {
    var Full = L.Control.extend({
      options: {position: "topleft"},
      onAdd: function () {
        var s = config.strings;
        var button = el("button", {type: "button", "class": "hr-fullscreen", title: s.fullscreen,
                                   "aria-label": s.fullscreen, "aria-pressed": "false"});
        button.appendChild(fullscreenIcon());
        var holder = el("div", {"class": "leaflet-bar leaflet-control"}, [button]);
        var target = document.documentElement;
        L.DomEvent.on(button, "click", function (event) {
          L.DomEvent.stop(event);
          if (document.fullscreenElement) { document.exitFullscreen(); } else if (target.requestFullscreen) {
            target.requestFullscreen();
          }
        });
        document.addEventListener("fullscreenchange", function () {
          var on = Boolean(document.fullscreenElement);
          var label = on ? s.exit_fullscreen : s.fullscreen;
          button.setAttribute("aria-pressed", on ? "true" : "false");
          button.setAttribute("title", label); button.setAttribute("aria-label", label);
          setTimeout(function () { map.invalidateSize(); }, 100);
        });
        if (!document.fullscreenEnabled) { holder.hidden = true; }
        return holder;
      }
    });
    return new Full();
  }

  /* "Download": the current view (its box), filters and language as a map image, through
   * /export/map.{format}. The link's address follows the view; every part is a native control. */
  function downloadControl(map, config, filters) {
    var s = config.strings;
    var Download = L.Control.extend({
      options: {position: "topleft"},
      onAdd: function () {
        var button = el("button", {type: "button", "class": "hr-download-toggle", "aria-expanded": "false",
                                   "aria-controls": "hr-download", text: s.download});
        var kind = el("select", {id: "hr-download-format"});
        ["png", "svg", "pdf"].forEach(function (f) { kind.appendChild(el("option", {value: f, text: f.toUpperCase()})); });
        var size = el("select", {id: "hr-download-size"});
        Object.keys(config.presets).forEach(function (key) {
          size.appendChild(el("option", {value: key, text: config.presets[key]}));
        });
        var link = el("a", {"class": "hr-download-link", download: ""});
        var body = el("div", {id: "hr-download", "class": "hr-download-body"}, [
          el("div", {"class": "hr-field"}, [el("label", {"for": "hr-download-format", text: s.format}), kind]),
          el("div", {"class": "hr-field"}, [el("label", {"for": "hr-download-size", text: s.size}), size]),
          link]);
        body.hidden = true;
        function update() {
          var b = map.getBounds();
          var west = Math.max(-180, b.getWest()), east = Math.min(180, b.getEast());
          var south = Math.max(-85, b.getSouth()), north = Math.min(85, b.getNorth());
          var params = new URLSearchParams();
          if (west < east) {
            params.set("bbox", [west, south, east, north].map(function (v) { return v.toFixed(4); }).join(","));
          }
          Object.keys(filters).forEach(function (name) { if (filters[name]) { params.set(name, filters[name]); } });
          params.set("preset", size.value);
          params.set("lang", config.lang);
          link.href = "/export/map." + kind.value + "?" + params.toString();
          link.textContent = s.download_as.replace("{fmt}", kind.value.toUpperCase());
        }
        button.addEventListener("click", function () {
          body.hidden = !body.hidden;
          button.setAttribute("aria-expanded", body.hidden ? "false" : "true");
          if (!body.hidden) { update(); }
        });
        kind.addEventListener("change", update);
        size.addEventListener("change", update);
        map.on("moveend", function () { if (!body.hidden) { update(); } });
        var box = el("section", {"class": "hr-download leaflet-bar", "aria-label": s.download}, [button, body]);
        box.hrUpdate = update;
        L.DomEvent.disableClickPropagation(box);
        L.DomEvent.disableScrollPropagation(box);
        update();
        return box;
      }
    });
    return new Download();
  }

  function select(name, label, options, value, onChange, allLabel) {
    var id = "hr-filter-" + name;
    var control = el("select", {id: id, name: name});
    control.appendChild(el("option", {value: "", text: allLabel}));
    Object.keys(options).forEach(function (key) {
      var option = el("option", {value: key, text: options[key]});
      if (key === value) { option.selected = true; }
      control.appendChild(option);
    });
    control.addEventListener("change", function () { onChange(name, control.value); });
    return el("div", {"class": "hr-field"}, [el("label", {"for": id, text: label}), control]);
  }

  /* Countries (a quiet base), regions from z4, municipalities from z8 and territories' own
   * boundaries, from one tileset. `drawn(properties, zoom)` says how a territory's boundary is
   * drawn: "fill", "outline" or null (not at all). The layer tells tests and embedding pages when
   * every tile in view has been fetched and drawn (window.HRTilesLoaded). */
  function baseLayer(config, drawn) {
    var options = {
      rendererFactory: L.svg.tile, interactive: false, maxNativeZoom: config.tileMaxZoom,
      attribution: config.attribution,
      vectorTileLayerStyles: {
        countries: {fill: true, fillColor: "#f3f1ec", fillOpacity: 1, color: "#a8a294", weight: 0.7,
                    className: "hr-country"},
        regions: function (properties, zoom) {
          return zoom >= 4 ? {fill: false, color: "#c9c3b6", weight: 0.5, className: "hr-region"} : [];
        },
        municipalities: function (properties, zoom) {
          return zoom >= 8 ? {fill: false, color: "#d5d0c5", weight: 0.4, className: "hr-municipality"} : [];
        },
        // a member without a boundary is a point in this layer: `drawn` leaves it to the markers
        // (VectorGrid 1.3 does not tell a style function a feature's geometry type)
        territories: function (properties, zoom) {
          var how = drawn(properties, zoom);
          if (!how) { return []; }
          var colour = config.colours[properties.commitment_kind] || "#777777";
          var outline = how === "outline";
          return {fill: !outline, fillColor: colour, fillOpacity: 0.35, color: colour,
                  weight: outline ? 1.2 : 1.5,
                  className: "hr-territory" + (outline ? " hr-territory-outline" : "")};
        }
      }
    };
    var layer = config.tilesArchive ? new ArchiveGrid(config.tilesArchive, options)
      : L.vectorGrid.protobuf(config.tiles, options);
    layer.on("loading", function () { window.HRTilesLoaded = false; });
    layer.on("load", function () { window.HRTilesLoaded = true; });
    return layer;
  }

  /* The base from one PMTiles archive (a published static site): each tile read with HTTP range
   * requests by the pmtiles package, then decoded by VectorGrid as if fetched from a URL (a blob:
   * URL of the tile's bytes, released once read). Beyond the archive's zoom, Leaflet scales its
   * deepest tiles (maxNativeZoom). A tile that cannot be read is left empty and said once. */
  var ArchiveGrid = L.VectorGrid.Protobuf.extend({
    initialize: function (url, options) {
      this._archive = new window.pmtiles.PMTiles(url);
      L.VectorGrid.Protobuf.prototype.initialize.call(this, "", options);
    },
    _getVectorTilePromise: function (coords) {
      var self = this, read = L.VectorGrid.Protobuf.prototype._getVectorTilePromise;
      return this._archive.getZxy(coords.z, coords.x, coords.y).then(function (found) {
        if (!found || !found.data || !found.data.byteLength) { return {layers: {}}; }
        var url = URL.createObjectURL(new Blob([found.data]));
        self._url = url;  // read synchronously by the call below
        return read.call(self, coords).then(function (tile) {
          URL.revokeObjectURL(url);
          return tile;
        });
      }).catch(function (error) {
        if (!self._failed) { self._failed = true; console.error("tiles: " + error); }
        return {layers: {}};
      });
    }
  });

  /* The small map of one territory's page: its boundary filled (or its point marked) on the
   * same base as the world map, framed on it. Configured by the page's #hr-mini-config. */
  function mini(node, config) {
    var t = config.territory;
    var map = L.map(node, {scrollWheelZoom: false, minZoom: 1, maxZoom: 18});
    var layer = baseLayer(config, function (properties) {
      return properties.id === t.id && t.bbox ? "fill" : null;
    });
    layer.addTo(map);
    var colour = config.colours[t.commitment_kind] || "#777777";
    L.circleMarker([t.lat, t.lon], {radius: 6, color: "#1d1d1b", weight: 1.5, fillColor: colour,
                                    fillOpacity: 1, interactive: false}).addTo(map);
    if (t.bbox) {
      map.fitBounds([[t.bbox[1], t.bbox[0]], [t.bbox[3], t.bbox[2]]], {padding: [16, 16], maxZoom: 12});
    } else {
      map.setView([t.lat, t.lon], 9);
    }
    window.HRMap.map = map;
    window.HRMapReady = true;
    document.documentElement.setAttribute("data-hrmap", "ready");
    return map;
  }

  function init(map, config) {
    var s = config.strings;
    var filters = readFilters(config);
    config.state = {year: filters.year};
    var inFrame = window.self !== window.top;
    document.body.classList.add(config.embed ? "hr-embed" : "hr-full");

    if (config.basemap && config.basemap.url) {
      L.tileLayer(config.basemap.url, {attribution: config.basemap.attribution || "", maxZoom: 19}).addTo(map);
    }

    var byId = {};
    config.territories.forEach(function (t) { byId[t.id] = t; });

    var base = baseLayer(config, function (properties, zoom) {
      var t = byId[properties.id];
      if (!t || !matches(t, filters) || shapePixels(t, zoom) < MIN_SHAPE_PX) { return null; }
      return zoom < OUTLINE_BELOW_ZOOM ? "outline" : "fill";
    });
    base.addTo(map);

    var clusters = L.markerClusterGroup({
      showCoverageOnHover: false, maxClusterRadius: 40, spiderfyOnMaxZoom: true,
      iconCreateFunction: function (cluster) {
        var n = cluster.getChildCount();
        var size = n < 10 ? "small" : n < 50 ? "medium" : "large";
        var inner = el("div", {}, [el("span", {text: String(n)})]);
        return new LabelledIcon({html: inner, className: "marker-cluster marker-cluster-" + size,
                                 iconSize: L.point(40, 40), label: format(s.cluster, n)});
      }
    });
    map.addLayer(clusters);
    var markers = config.territories.map(function (t) { return markerFor(t, config); });

    // the panel: counter, search, filters, the list of territories in view
    var panelBody = el("div", {"class": "hr-panel-body", id: "hr-panel-body"});
    var counter = el("p", {"class": "hr-counter", "aria-live": "polite"});
    var shown = el("p", {"class": "hr-shown", "aria-live": "polite"});
    var searchId = "hr-search";
    var search = el("input", {id: searchId, type: "search", autocomplete: "off", placeholder: s.search,
                              "aria-controls": "hr-results"});
    var results = el("ul", {id: "hr-results", "class": "hr-results", "aria-label": s.search});
    var listHead = el("h2", {"class": "hr-list-head", text: s.in_view});
    var list = el("ul", {"class": "hr-list", "aria-label": s.in_view});
    var years = timeline(config, filters, function (name, value) { setFilter(name, value); });
    var fields = el("div", {"class": "hr-fields"}, [
      years.node,
      select("theme", s.theme, config.themes, filters.theme, setFilter, s.all),
      select("section", s.section, config.sections, filters.section, setFilter, s.all),
      select("kind", s.kind, config.kinds, filters.kind, setFilter, s.all),
      select("commitment_kind", s.commitment_kind, config.commitments, filters.commitment_kind, setFilter, s.all)
    ]);
    var reset = el("button", {type: "button", "class": "hr-reset", text: s.reset});
    reset.addEventListener("click", function () {
      Object.keys(filters).forEach(function (name) {
        filters[name] = "";
        if (name === "year") { years.set(""); } else { document.getElementById("hr-filter-" + name).value = ""; }
      });
      refresh(false);
    });
    var languages = el("nav", {"class": "hr-langs", "aria-label": s.language});
    config.langs.forEach(function (code) {
      var a = el("a", {href: langHref(code), lang: code, hreflang: code, text: code.toUpperCase()});
      if (code === config.lang) { a.setAttribute("aria-current", "true"); }
      a.addEventListener("click", function () { a.href = langHref(code) + window.location.hash; });
      languages.appendChild(a);
    });
    // the page in another language: ?lang= here, or that language's own file (config.pages,
    // relative) in a published site, with the same filters
    function langHref(code) {
      var params = new URLSearchParams(window.location.search);
      if (config.pages) {
        params.delete("lang");
        var query = params.toString();
        return config.pages[code] + (query ? "?" + query : "");
      }
      params.set("lang", code);
      return "?" + params.toString();
    }
    panelBody.appendChild(el("label", {"for": searchId, "class": "hr-visually-hidden", text: s.search}));
    [search, results, fields, reset, shown, listHead, list,
     el("p", {"class": "hr-caveat", text: s.caveat})].forEach(function (n) { panelBody.appendChild(n); });
    var toggle = el("button", {type: "button", "class": "hr-toggle", "aria-controls": "hr-panel-body",
                               text: s.filters});
    var box = null;  // the panel, once added
    // A small frame (a phone, a narrow iframe) gets the panel as one button: opened, it shows
    // the title, counter, languages, filters and list; closed, it covers little of the map.
    var compactFrame = window.matchMedia("(max-width: 699px), (max-height: 499px)");
    function setOpen(open) {
      panelBody.hidden = !open;
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      if (box) { box.classList.toggle("hr-collapsed", compactFrame.matches && !open); }
    }
    function fitPanelToFrame() {
      if (box) { box.classList.toggle("hr-compact", compactFrame.matches); }
      setOpen(!compactFrame.matches && !config.embed);
    }
    toggle.addEventListener("click", function () { setOpen(panelBody.hidden); });
    var Panel = L.Control.extend({
      options: {position: "topright"},
      onAdd: function () {
        box = el("section", {"class": "hr-panel", "aria-label": s.title}, [
          el("h1", {"class": "hr-title", text: s.title}), counter, languages, toggle, panelBody]);
        L.DomEvent.disableClickPropagation(box);
        L.DomEvent.disableScrollPropagation(box);
        return box;
      }
    });
    new Panel().addTo(map);
    fitPanelToFrame();
    if (compactFrame.addEventListener) { compactFrame.addEventListener("change", fitPanelToFrame); }
    legendControl(config, compactFrame.matches).addTo(map);
    fullscreenControl(map, config).addTo(map);
    var download = config.download ? downloadControl(map, config, filters).addTo(map) : null;
    counter.textContent = format(s.counter, config.total);

    function setFilter(name, value) { filters[name] = value; config.state.year = filters.year; refresh(false); }

    function visible() { return markers.filter(function (m) { return matches(m.territory, filters); }); }

    function open(marker) {
      clusters.zoomToShowLayer(marker, function () { marker.openPopup(); });
    }

    function refreshList() {
      var bounds = map.getBounds();
      var inView = visible().filter(function (m) { return bounds.contains(m.getLatLng()); });
      list.textContent = "";
      inView.slice(0, 200).forEach(function (m) {
        var button = el("button", {type: "button", text: m.territory.name + " (" + m.territory.country_name + ")"});
        button.addEventListener("click", function () { open(m); });
        list.appendChild(el("li", {}, [button]));
      });
      if (!inView.length) { list.appendChild(el("li", {text: s.no_match})); }
    }

    function refresh(first) {
      writeFilters(filters);
      var keep = visible();
      clusters.clearLayers();
      clusters.addLayers(keep);
      shown.textContent = format(s.shown, keep.length);
      if (!first) { base.redraw(); }  // territory polygons follow the filters
      if (download) { download.getContainer().hrUpdate(); }  // and the download link
      refreshList();
      runSearch();
    }

    function runSearch() {
      var query = search.value.trim().toLocaleLowerCase();
      results.textContent = "";
      if (!query) { return; }
      var found = visible().filter(function (m) {
        var t = m.territory;
        return t.name.toLocaleLowerCase().indexOf(query) >= 0 ||
          (t.local_name || "").toLocaleLowerCase().indexOf(query) >= 0;
      }).slice(0, 10);
      found.forEach(function (m) {
        var button = el("button", {type: "button", text: m.territory.name + " (" + m.territory.country_name + ")"});
        button.addEventListener("click", function () { open(m); });
        results.appendChild(el("li", {}, [button]));
      });
      if (!found.length) { results.appendChild(el("li", {text: s.no_match})); }
    }
    search.addEventListener("input", runSearch);
    map.on("moveend", refreshList);

    if (inFrame && map.gestureHandling) {
      map.gestureHandling.enable();  // no wheel zoom inside a host page: ctrl + wheel, two fingers
    }
    // At start, without a view in the URL: every member shown in the frame, at a fractional
    // zoom, and the world about once across at most (no zoom out past one world's width).
    function worldOnce() { return Math.max(0, Math.log(map.getSize().x / 256) / Math.LN2); }
    map.options.minZoom = worldOnce();  // not setMinZoom: its animated zoom would end after the view set below
    map.on("resize", function () { map.setMinZoom(worldOnce()); });
    var asked = L.Hash.prototype.parseHash(window.location.hash);
    if (asked) {  // the view in the URL, at once (leaflet-hash applies it 100 ms later)
      map.setView(asked.center, asked.zoom, {animate: false});
    } else {
      var points = visible().map(function (m) { return m.getLatLng(); });
      if (points.length) {
        map.fitBounds(L.latLngBounds(points), {padding: [24, 24], animate: false});
      } else {
        map.setView([20, 10], map.getMinZoom(), {animate: false});
      }
    }
    new L.Hash(map);  // the view as #zoom/lat/lon
    refresh(true);
    window.HRMap.map = map;
    window.HRMapReady = true;
    document.documentElement.setAttribute("data-hrmap", "ready");
  }

  /* The small map of an API page: the page's features (GeoJSON) on the same base, framed on
   * them; members in their commitment's colour. Configured by the page's #hr-features-config. */
  function features(node, config) {
    var map = L.map(node, {scrollWheelZoom: false, minZoom: 1, maxZoom: 18});
    baseLayer(config, function () { return null; }).addTo(map);
    function colour(feature) {
      return config.colours[(feature.properties || {}).commitment_kind] || "#005a8c";
    }
    var layer = L.geoJSON(config.data, {
      style: function (feature) {
        return {color: colour(feature), weight: 1.2, fillOpacity: 0.25, interactive: false};
      },
      pointToLayer: function (feature, latlng) {
        return L.circleMarker(latlng, {radius: 5, color: "#1d1d1b", weight: 1, fillColor: colour(feature),
                                       fillOpacity: 1, interactive: false});
      }
    }).addTo(map);
    var bounds = layer.getBounds();
    if (bounds.isValid()) { map.fitBounds(bounds, {padding: [16, 16], maxZoom: 12}); } else { map.setView([20, 10], 1); }
    window.HRMap.map = map;
    window.HRMapReady = true;
    document.documentElement.setAttribute("data-hrmap", "ready");
    return map;
  }

  /* The world map, once its members are in the config: inline (the app's pages), or read from
   * the GeoJSON file of a published site (config.membersUrl). If that file cannot be read, the
   * map says so in place of the members. */
  function start(map, config) {
    if (!config.membersUrl) { return init(map, config); }
    fetch(config.membersUrl).then(function (response) {
      if (!response.ok) { throw new Error(config.membersUrl + ": HTTP " + response.status); }
      return response.json();
    }).then(function (members) {
      config.territories = members.features.map(function (f) { return f.properties; });
      config.total = config.territories.length;
      init(map, config);
    }).catch(function (error) {
      console.error("members: " + error);
      map.getContainer().appendChild(el("p", {"class": "hr-unavailable", role: "alert",
                                              text: config.strings.unavailable}));
      map.setView([20, 10], 1);
      window.HRMapFailed = true;
    });
  }

  window.HRMap = {init: start, mini: mini, features: features};
  document.addEventListener("DOMContentLoaded", function () {
    [["hr-mini", mini], ["hr-features", features]].forEach(function (pair) {
      var node = document.getElementById(pair[0]);
      var source = document.getElementById(pair[0] + "-config");
      if (node && source) { pair[1](node, JSON.parse(source.textContent)); }
    });
  });
})();
