"""``terrawatch change IMAGE1 IMAGE2``: change between two plain images, as ``segment`` does one.

No catalog, no store, no cluster: both images are read, the weights checked (all missing named
at once), the detector built as the flow's workers build it, and one GeoTIFF (and a preview
PNG) written with the first image's georeference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from terrawatch.errors import InputError

FLOW_ONLY = ("aoi", "before", "after", "from_cube", "store", "dry_run")
"""Options of the change cube that do not go with two images."""


def run_image_pair(args: argparse.Namespace) -> int:
    """Check the options, the images and the weights, then detect and write."""
    if len(args.images) != 2:
        raise InputError(
            f"give two images (IMAGE1 IMAGE2), got {len(args.images)}: {' '.join(args.images)}"
        )
    given = [name for name in FLOW_ONLY if getattr(args, name)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise InputError(f"{flags} go with a change cube, not with two images; drop them")
    if not args.out:
        raise InputError("two images need --out change.tif (the change GeoTIFF to write)")
    from terrawatch.flows.change import change_spec
    from terrawatch.flows.cli import check_model_weights
    from terrawatch.flows.cli_common import read_classes, read_options
    from terrawatch.flows.options import ChangeOptions, ModelOptions
    from terrawatch.models.weights_check import all_missing_weights
    from terrawatch.tasks.change.image_pair import detect_pair, read_pair, write_change_geotiff
    from terrawatch.tasks.change.tile import class_query
    from terrawatch.tasks.core.image_io import write_preview_png
    from terrawatch.tasks.core.render import class_colors

    classes = read_classes(args)
    detection = read_options(args, ChangeOptions)
    model = read_options(args, ModelOptions)
    query = class_query(classes, detection.targets, detection.from_classes, detection.to_classes)
    steps = detection.chosen_steps()  # `auto`: SAM + DINOv2 where their weights are present
    first, second = read_pair(*args.images)
    with all_missing_weights():
        check_model_weights(args)
        detection.resolve_weights(steps)
    spec = change_spec(classes, query, detection, model, steps)
    names = [entry.split(",")[0] for entry in classes]
    change = detect_pair(spec, first, second)
    write_change_geotiff(args.out, change, names)
    if args.png:
        title = f"{Path(args.images[0]).name} -> {Path(args.images[1]).name}: class where changed"
        write_preview_png(
            args.png, change.class_to, names, colors=class_colors(names), rgb=second.rgb,
            title=title,
        )  # fmt: skip
    changed = int((change.changed == 1).sum())
    share = 100 * changed / max(int((change.changed != 255).sum()), 1)
    print(f"wrote {args.out}" + (f" and {args.png}" if args.png else "")
          + f": {changed} pixels changed ({share:.1f} %)")  # fmt: skip
    return 0
