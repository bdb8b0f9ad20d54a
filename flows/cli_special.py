"""``terrawatch segment IMAGE --refine special``: SPECIAL on one multi/hyperspectral image.

Bad input (no wavelengths, too few usable bands, unknown classifier) fails in one line before
the model loads. Writes the refined map to ``--out``, the zero-shot map it was trained from
beside it (``NAME_zero_shot.tif``) and the refinement's settings and training losses as
``NAME.special.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from terrawatch.errors import InputError

REFINEMENTS = ("none", "special")


def add_refine_options(parser: argparse.ArgumentParser) -> None:
    """The ``--refine`` block of ``segment``."""
    parser.add_argument(
        "--refine",
        choices=REFINEMENTS,
        default="none",
        help="'special': train a spectral classifier on every band from the zero-shot map "
        "(SPECIAL); the zero-shot pass then runs at native resolution",
    )
    parser.add_argument(
        "--wavelengths",
        help="with --refine special: text file of band centre wavelengths (nm), one per band, "
        "for rasters whose metadata has none",
    )
    parser.add_argument(
        "--labels",
        help="with --refine special: your own labels (GeoPackage/GeoJSON/GeoParquet polygons "
        "or points with a 'class' column of class names), used as clean training samples",
    )
    parser.add_argument("--labels-column", help="the class-name column of --labels")
    parser.add_argument(
        "--refine-classifier",
        default="fcn",
        help="with --refine special: 'fcn' (a small spectral-spatial CNN that runs on the CPU) or "
        "'mambahsi' (needs mamba_ssm and CUDA)",
    )


def run_special_segment(args: argparse.Namespace, classes, model_options: dict) -> int:
    """Read and check the spectral image, then zero-shot -> SPECIAL -> write both maps."""
    from terrawatch.models.classes import parse_class_names
    from terrawatch.models.segearth import SegEarthOV
    from terrawatch.models.special.classifier import CLASSIFIERS
    from terrawatch.models.special.training import SpecialSettings
    from terrawatch.tasks.core.image_io import write_label_geotiff, write_preview_png
    from terrawatch.tasks.core.render import class_colors
    from terrawatch.tasks.core.special_refine import refine_image
    from terrawatch.tasks.core.spectral_image import read_spectral_image, read_wavelength_file
    from terrawatch.tasks.core.user_labels import read_user_labels

    if args.refine_classifier not in CLASSIFIERS:
        raise InputError(
            f"--refine-classifier must be one of {', '.join(CLASSIFIERS)}, "
            f"got {args.refine_classifier!r}"
        )
    if args.bands:
        raise InputError("--bands picks RGB bands; --refine special uses every usable band")
    wavelengths = read_wavelength_file(args.wavelengths) if args.wavelengths else None
    image = read_spectral_image(args.image, wavelengths)
    settings = SpecialSettings(classifier=args.refine_classifier)
    names = list(parse_class_names(classes).names)
    user_labels = None
    if args.labels:
        shape = image.valid.shape
        user_labels = read_user_labels(args.labels, names, image.profile, shape, args.labels_column)
    model = SegEarthOV.from_pretrained(device=args.device, resize_long_side=None, **model_options)
    model.set_classes(classes)
    device = str(model.device)
    refined = refine_image(model, image, names, settings, device, user_labels)
    colors = class_colors(names)
    out = Path(args.out)
    zero_shot_path = out.with_name(f"{out.stem}_zero_shot{out.suffix or '.tif'}")
    write_label_geotiff(out, refined.labels, names, image.profile, colors=colors)
    write_label_geotiff(zero_shot_path, refined.zero_shot, names, image.profile, colors=colors)
    record = out.with_name(f"{out.stem}.special.json")
    record.write_text(json.dumps({"classes": names, **refined.provenance}, indent=1))
    if args.png:
        write_preview_png(
            args.png,
            refined.labels,
            names,
            colors=colors,
            rgb=refined.rgb,
            title=Path(args.image).name,
        )
    print(f"wrote {out}, {zero_shot_path} and {record}" + (f" and {args.png}" if args.png else ""))
    return 0
