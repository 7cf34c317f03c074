"""Run by Debian's Python with QGIS (python3-qgis, qgis-providers), offscreen: open collections of
an OGC API Features server as QGIS's OAPIF provider does for a desktop user, and print as JSON each
layer's declared geometry type, its features' geometry types, and how many pixels QGIS draws of it
with its default style over the bounding box of one feature (FOCUS: FIELD=VALUE).

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 qgis_probe.py URL FOCUS COLLECTION...
"""

from __future__ import annotations

import json
import sys

from qgis.core import QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsVectorLayer, QgsWkbTypes
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor


def drawn_pixels(layer: QgsVectorLayer, focus: str) -> int:
    """Pixels of a 300×300 white image that the layer's default style paints over the bounding
    box of the feature whose `focus` is FIELD=VALUE (0 when the layer has no such feature)."""
    field, value = focus.split("=", 1)
    found = [f.geometry().boundingBox() for f in layer.getFeatures() if f[field] == value]
    if not found:
        return 0
    box = found[0]
    box.grow(max(box.width(), box.height()) * 0.1 or 0.05)  # a point: 0.05° around it
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(box)
    settings.setOutputSize(QSize(300, 300))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    white = QColor(255, 255, 255).rgb()
    return sum(1 for x in range(image.width()) for y in range(image.height())
               if image.pixel(x, y) != white)


def probe(url: str, focus: str, name: str) -> dict:
    layer = QgsVectorLayer(f"url='{url}' typename='{name}'", name, "OAPIF")
    if not layer.isValid():
        return {"valid": False}
    types: dict[str, int] = {}
    for feature in layer.getFeatures():
        geometry = feature.geometry()
        kind = "null" if geometry.isNull() else QgsWkbTypes.displayString(geometry.wkbType())
        types[kind] = types.get(kind, 0) + 1
    return {"valid": True, "declared": QgsWkbTypes.displayString(layer.wkbType()),
            "features": types, "pixels": drawn_pixels(layer, focus)}


def main() -> None:
    app = QgsApplication([], False)
    app.initQgis()
    print(json.dumps({name: probe(sys.argv[1], sys.argv[2], name) for name in sys.argv[3:]}))
    app.exitQgis()


if __name__ == "__main__":
    main()
