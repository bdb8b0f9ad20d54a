"""The class table of an exported class map as a raster attribute table (RAT) beside the COG.

rasterio cannot write a RAT into a GeoTIFF, but GDAL reads one from the file's PAM sidecar,
``NAME.tif.aux.xml`` (a ``GDALRasterAttributeTable`` of band 1), and so do the tools built on
it: QGIS (3.30+) lists the classes from it and can style the layer by them, ``gdalinfo``
prints it, ArcGIS reads ``.aux.xml`` attribute tables too. The table is *thematic*, one row
per class: ``Value`` (the pixel value, usage MinMax), ``Class`` (its name, usage Name) and
``Red``/``Green``/``Blue``/``Alpha`` (the cube's palette, usages Red..Alpha). The COG keeps its
colour table and ``CLASS_<value>`` metadata, so a reader that ignores sidecars loses nothing.

The sidecar is written after the COG is in place, whole (:mod:`tasks.core.atomic_write`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from terrawatch.tasks.core.atomic_write import write_whole
from terrawatch.tasks.core.export_source import ExportLayer
from terrawatch.tasks.core.render import color_rgb255

_INTEGER, _STRING = 0, 2
"""GDAL's ``GDALRATFieldType`` codes."""
COLUMNS = (
    ("Value", _INTEGER, 5),  # GFU_MinMax: the pixel value of the row
    ("Class", _STRING, 2),  # GFU_Name
    ("Red", _INTEGER, 6),
    ("Green", _INTEGER, 7),
    ("Blue", _INTEGER, 8),
    ("Alpha", _INTEGER, 9),
)
"""Name, GDAL field type and GDAL field usage (``GDALRATFieldUsage``) of each column."""


def sidecar_path(path: str | Path) -> Path:
    """Where GDAL looks for the PAM sidecar of ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".aux.xml")


def write_rat_sidecar(layer: ExportLayer, path: str | Path) -> Path:
    """Write the class table of ``layer`` as the RAT of band 1 of the raster at ``path``."""
    dataset = ET.Element("PAMDataset")
    band = ET.SubElement(dataset, "PAMRasterBand", band="1")
    table = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    for index, (name, kind, usage) in enumerate(COLUMNS):
        field = ET.SubElement(table, "FieldDefn", index=str(index))
        ET.SubElement(field, "Name").text = name
        ET.SubElement(field, "Type").text = str(kind)
        ET.SubElement(field, "Usage").text = str(usage)
    for row_index, (value, name, color) in enumerate(
        zip(layer.values, layer.names, layer.colors, strict=True)
    ):
        red, green, blue = (int(c) for c in color_rgb255(color, f"class {value} colour"))
        row = ET.SubElement(table, "Row", index=str(row_index))
        for cell in (value, name, red, green, blue, 255):
            ET.SubElement(row, "F").text = str(cell)
    ET.indent(dataset)
    target = sidecar_path(path)
    write_whole(str(target), ET.tostring(dataset, encoding="utf-8"))
    return target
