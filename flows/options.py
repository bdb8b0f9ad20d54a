"""The flows' option groups: every setting declared once, with its type, default and help.

The flows take these groups as parameters (Prefect shows each as a nested form and validates
it), and the command line builds its options from the same fields
(:func:`terrawatch.flows.cli_common.add_option_group`): the flag is the field name with dashes,
the help is the field's description, the default is the field's default and ``Literal`` fields
become choices. A default shared with the tasks lives in :mod:`terrawatch.tasks.core.defaults`
(or the product package) and the field takes it from there.

Value rules (ranges, combinations) are not repeated here: each has one check in the task or
model that owns it, and the flow's inputs step calls that check before any heavy work. The
groups fix the structure: names, types and choices.

This module imports only pydantic and the light constant modules, so ``terrawatch --help``
stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from terrawatch.models.settings import (
    BACKBONES,
    DEFAULT_BACKBONE,
    ChangeSettings,
    SegEarthSettings,
)
from terrawatch.tasks.change import COMPARATORS, DEFAULT_COMPARATOR, DEFAULT_PROPOSER, PROPOSERS
from terrawatch.tasks.core.defaults import (
    HALO,
    MIN_CHUNK,
    SAR_COMPOSITE,
    SAR_SPECKLE,
    SAR_SPECKLE_WINDOW,
    SENSOR_GSD,
)

if TYPE_CHECKING:
    from terrawatch.models.classes import ClassNames
    from terrawatch.tasks.alignearth.chips import ChipRequest
    from terrawatch.tasks.change.steps import StepChoice
    from terrawatch.tasks.core.sar_composite import SarOptions
    from terrawatch.tasks.core.worker_model import ModelSpec


@dataclass(frozen=True)
class Cli:
    """How a field shows on the command line where its name and type do not say it.

    Put it in the field's ``Annotated`` metadata; pydantic ignores it.
    """

    flag: str | None = None
    """The option's flag when it is not ``--field-name`` (a flag users already type)."""
    sep: str | None = None
    """A list typed as one word split at ``sep`` (``--targets building,road``)."""


class Options(BaseModel):
    """An option group: immutable, and unknown names are refused (a typo is an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Loader = Literal["odc", "stackstac"]
"""How scenes are read: odc-stac or stackstac."""

_LOADER_HELP = "odc (odc-stac) or stackstac"
_GSD = ", ".join(f"{prefix} {gsd:g}" for prefix, gsd in SENSOR_GSD.items())


# --- shared groups ----------------------------------------------------------------------------


class SearchOptions(Options):
    """Where the scenes come from and which are kept."""

    catalog: str = Field(
        "earth-search",
        description="earth-search, planetary-computer, a STAC API URL or a local folder",
    )
    collections: list[str] | None = Field(
        None, description="STAC collections to search (default: the catalog's Sentinel-2 L2A)"
    )
    max_cloud: float | None = Field(
        20.0, description="max eo:cloud_cover in percent (none: no limit)"
    )
    max_items: int = Field(50, description="max number of scenes (per period)")


class GridOptions(Options):
    """The output grid; unset values follow the AOI and the sensor."""

    resolution: float | None = Field(
        None,
        description=f"output pixel size in CRS units = inference GSD (default per sensor, m: "
        f"{_GSD}; other collections their native size)",
    )
    crs: str | None = Field(None, description="output CRS (default: UTM zone of the AOI centre)")


class TilingOptions(Options):
    """How the output is cut into tiles and how each tile's scenes are read."""

    chunk: int = Field(
        1024, description=f"output chunk (tile) size in pixels, at least {MIN_CHUNK}"
    )
    halo: int = Field(HALO, description="pixels read around each chunk for context")
    loader: Loader = Field("odc", description=_LOADER_HELP)
    replace: bool = Field(
        False,
        description="rewrite this run's step if the store has it (every tile, from this run's"
        " scenes); without it a finished step is kept even if the catalog changed",
    )
    stac: str | None = Field(
        None,
        description="folder of the cube's STAC Collection and Items, rewritten at the end of "
        "every run (default: STORE.stac beside the store)",
    )


class ModelOptions(Options):
    """Segmenter choice and settings (published SegEarth-OV defaults)."""

    backbone: Literal[tuple(BACKBONES)] = Field(  # type: ignore[valid-type]
        DEFAULT_BACKBONE, description="CLIP backbone"
    )
    weights: str | None = Field(
        None, description="CLIP checkpoint path (default: weights dir, then download)"
    )
    upsampler: Literal["simfeatup", "bilinear"] = Field(
        "simfeatup", description="feature upsampler"
    )
    upsampler_weights: str | None = Field(None, description="SimFeatUp checkpoint path")
    trust_checkpoint: bool = Field(
        False,
        description="load checkpoints that pickle Python objects (this can run code from them;"
        " only for files from a trusted source)",
    )
    prob_thd: float = Field(
        SegEarthSettings.prob_thd, description="min class probability, else --bg-idx"
    )
    bg_idx: int = Field(
        SegEarthSettings.bg_idx, description="class index for low-confidence pixels"
    )
    batch_size: int = Field(SegEarthSettings.batch_size, description="windows per forward pass")
    device: str | None = Field(
        None, description="torch device of the model (default: cuda where there is one, else cpu)"
    )

    def settings(self) -> tuple[tuple[str, Any], ...]:
        """The inference settings as (name, value) pairs, as :class:`ModelSpec` keeps them."""
        return (
            ("prob_thd", self.prob_thd),
            ("bg_idx", self.bg_idx),
            ("batch_size", self.batch_size),
        )

    def resolve_weights(self) -> None:
        """Find (or download once, into the weights dir the workers read) every checkpoint.

        Raises:
            WeightsNotFoundError: a checkpoint is missing and cannot be downloaded.
        """
        from terrawatch.models.segearth import SIMFEATUP_WEIGHTS
        from terrawatch.models.weights import resolve_weights

        resolve_weights(self.backbone, self.weights)
        if self.upsampler == "simfeatup":
            resolve_weights(SIMFEATUP_WEIGHTS, self.upsampler_weights)

    def spec(self, classes: ClassNames | list[str]) -> ModelSpec:
        """The hashable spec the workers load the model from."""
        from terrawatch.tasks.core.worker_model import ModelSpec

        return ModelSpec(
            classes,
            self.backbone,
            self.weights,
            self.upsampler,
            self.upsampler_weights,
            self.settings(),
            device=self.device,
            trust_checkpoint=self.trust_checkpoint,
        )


class LandcoverModelOptions(ModelOptions):
    """Segmenter options of a land-cover run, plus the spectral refinement."""

    refine: Literal["none", "special"] = Field(
        "none",
        description="refine the zero-shot map: special (a spectral classifier trained once per "
        "time step from the zero-shot labels of all tiles, on every 10/20 m band; the cube keeps "
        "the zero-shot map as landcover_zero_shot)",
    )
    refine_epochs: int | None = Field(
        None,
        ge=1,
        description="with --refine special: training epochs, the first half warm-up (default: "
        "SPECIAL's 10); fewer train faster on large scenes",
    )
    refine_classifier: Literal["fcn", "mambahsi"] = Field(
        "fcn",
        description="with --refine special: fcn (a small spectral-spatial CNN that runs on the "
        "CPU) or mambahsi (needs mamba_ssm and CUDA)",
    )
    labels: str | None = Field(
        None,
        description="with --refine special: your own labels (GeoPackage/GeoJSON/GeoParquet "
        "polygons or points with a 'class' column of class names), clean training samples",
    )
    labels_column: str | None = Field(None, description="the class-name column of --labels")
    factory: Annotated[str | None, Cli(flag="--model-factory")] = Field(
        None, description="'package.module:callable' building your own segmenter (ModelSpec)"
    )
    probabilities: bool = Field(
        False,
        description="also store per-class probabilities: 'probability', uint8 percent per class "
        "(dims time, class, y, x), the segmenter's class scores the labels come from",
    )

    def resolve_weights(self) -> None:
        """SegEarth-OV's checkpoints; nothing for a ``factory`` segmenter (it finds its own)."""
        if not self.factory:
            super().resolve_weights()

    def spec(self, classes: ClassNames | list[str]) -> ModelSpec:
        """The spec of the segmenter, a ``factory`` one included."""
        import dataclasses

        return dataclasses.replace(super().spec(classes), factory=self.factory)


class RunOptions(Options):
    """Where the command line runs a flow (a deployment's work pool says it for deployments)."""

    address: str | None = Field(
        None, description="existing Dask scheduler, e.g. tcp://host:8786 (default: a local one)"
    )


# --- change -----------------------------------------------------------------------------------

_ClassNames = Annotated[list[str] | None, Cli(sep=",")]


class ChangeOptions(Options):
    """What change is reported and how it is detected (DynamicEarth, published defaults)."""

    targets: _ClassNames = Field(
        None, description="classes whose change is reported (default: all but class 0)"
    )
    from_classes: _ClassNames = Field(
        None, description="report only changes from these classes (default: any)"
    )
    to_classes: _ClassNames = Field(
        None, description="report only changes to these classes (default: any)"
    )
    mode: Literal["mci", "imc"] = Field(
        ChangeSettings.mode,
        description="mci (mask, compare, identify) or imc (identify, mask, compare)",
    )
    theta: float = Field(
        ChangeSettings.theta_deg, description="change angle θ in degrees (published 145)"
    )
    rule: Literal["instance", "landcover"] | None = Field(
        None,
        description="instance (change of objects of the target classes) or landcover (any "
        "class change); default: instance with SAM masks, landcover with superpixels",
    )
    proposer: Literal[PROPOSERS] = Field(  # type: ignore[valid-type]
        DEFAULT_PROPOSER,
        description="mask proposer: sam, superpixel (weights-free) or auto (sam when SAM and "
        "DINOv2 are in the weights directory, else superpixel)",
    )
    comparator: Literal[COMPARATORS] = Field(  # type: ignore[valid-type]
        DEFAULT_COMPARATOR,
        description="feature comparator: dinov2, the segmenter's clip, or auto (dinov2 when "
        "SAM and DINOv2 are in the weights directory, else clip)",
    )
    proposer_weights: str | None = Field(
        None, description="SAM checkpoint path (default: weights dir, then download)"
    )
    comparator_weights: str | None = Field(
        None, description="DINOv2 checkpoint path (default: weights dir, then download)"
    )

    def chosen_steps(self) -> StepChoice:
        """The proposer and comparator this run uses (``auto`` resolved), with the reason."""
        from terrawatch.tasks.change.steps import choose_steps

        return choose_steps(
            self.proposer, self.comparator, self.proposer_weights, self.comparator_weights
        )

    def resolve_weights(self, steps: StepChoice | None = None) -> None:
        """Find (or download once) the SAM and DINOv2 models when they are chosen."""
        from terrawatch.models.features import DINOV2_WEIGHTS
        from terrawatch.models.hf_weights import resolve_hf_model
        from terrawatch.models.sam import SAM_WEIGHTS

        steps = steps or self.chosen_steps()
        if steps.proposer == "sam":
            resolve_hf_model(SAM_WEIGHTS, steps.proposer_weights)
        if steps.comparator == "dinov2":
            resolve_hf_model(DINOV2_WEIGHTS, steps.comparator_weights)

    def chosen_rule(self, proposer: str | None = None) -> str:
        """The rule: as given, else ``instance`` with SAM masks and ``landcover`` otherwise.

        ``proposer`` is the chosen one (``auto`` resolved; default: :meth:`chosen_steps`).
        Superpixels tile both dates alike, so the NMS merge keeps one date's copy of a region
        more or less at random, and the instance rule (judged on that date only) then missed
        4-42% of planted changes.
        """
        proposer = proposer or self.chosen_steps().proposer
        return self.rule or ("instance" if proposer == "sam" else "landcover")


class ChangeTilingOptions(TilingOptions):
    """Tiling of a change run: smaller chunks than land cover."""

    chunk: int = Field(
        512,
        description=f"output chunk (tile) size in pixels, at least {MIN_CHUNK}; 512, not 1024: "
        "masks are dense [N, H, W] booleans, about 1 GB per date at 1024² with 1 kpx regions",
    )


# --- SAR (flood, align-sar) -------------------------------------------------------------------


class SarInputOptions(Options):
    """Which SAR passes are kept and how each side's composite is made."""

    orbit: Literal["ascending", "descending"] | None = Field(
        None, description="keep only ascending or descending passes (needed when both occur)"
    )
    polarizations: Annotated[list[str] | None, Cli(sep=",")] = Field(
        None, description="polarisations to load, e.g. vv,vh (default: what the composite needs)"
    )
    speckle: Literal["lee", "refined_lee"] | None = Field(SAR_SPECKLE, description="speckle filter")
    speckle_window: int = Field(SAR_SPECKLE_WINDOW, description="speckle filter window in pixels")
    composite: Literal["grey", "dual"] = Field(
        SAR_COMPOSITE,
        description="SAR model input: grey (co-pol; what AlignEarth was shown on) or dual",
    )

    def composite_options(self) -> SarOptions:
        """The checked composite options of the SAR tasks.

        Raises:
            InputError: bad polarisations or speckle options.
        """
        from terrawatch.tasks.core.sar_composite import SarOptions

        pols = tuple(self.polarizations) if self.polarizations else None
        return SarOptions(pols, self.speckle, self.speckle_window, self.composite)


# --- flood ------------------------------------------------------------------------------------


class FloodWindowOptions(Options):
    """The search windows around the event date."""

    pre_days: int = Field(
        12, description="days before the event searched for the reference (pre-event) images"
    )
    post_days: int = Field(6, description="days from the event date searched for the flood")
    reference_days: int = Field(
        60,
        description="days before the event whose SAR scenes define normal water and the "
        "exclusion mask (threshold member; at least pre_days)",
    )


class FloodSearchOptions(SearchOptions):
    """SAR scenes of both windows, and cloud-free optical scenes where the catalog has them."""

    catalog: str = Field(
        "planetary-computer",
        description="planetary-computer (Sentinel-1 RTC), earth-search (GRD), a STAC API URL or "
        "a local folder",
    )
    collections: list[str] | None = Field(
        None,
        description="SAR collections (default: sentinel-1-rtc on Planetary Computer, else "
        "sentinel-1-grd)",
    )
    optical: bool = Field(
        True,
        description="use cloud-free optical scenes (Sentinel-2 L2A) of both windows where the "
        "catalog has them: the optical member's NDWI/MNDWI rule on SCL-masked pixels, and the "
        "optical segmenter where its weights are found",
    )
    optical_collections: list[str] | None = Field(
        None, description="optical collections (default: sentinel-2-l2a)"
    )
    max_cloud: float | None = Field(
        10.0, description="max eo:cloud_cover of optical scenes in percent (none: no limit)"
    )
    max_items: int = Field(20, description="max scenes per window and sensor")
    landcover_cube: str | None = Field(
        None,
        description="a terrawatch land-cover cube (Zarr): its urban and forest classes join the "
        "exclusion mask and the report splits the flooded km² by its classes",
    )


class FloodOutputOptions(Options):
    """What a flood run hands out besides the cube: polygons, footprint, numbers, report."""

    min_area: float = Field(
        0.5,
        ge=0,
        description="minimum mapping unit of the flood polygons in hectares (smaller flooded "
        "regions stay in the cube but get no polygon)",
    )


class FloodModelOptions(ModelOptions):
    """Segmenter options of a flood run: SAR (AlignEarth) by default, optical for S2 scenes."""

    sensor: Literal["sar", "optical"] = Field(
        "sar", description="encoder for the SAR composites: sar (AlignEarth) or optical CLIP"
    )
    optical_weights: str | None = Field(
        None, description="CLIP checkpoint for optical scenes (default: weights dir, then download)"
    )
    factory: Annotated[str | None, Cli(flag="--model-factory")] = Field(
        None, description="'package.module:callable' building your own segmenter (ModelSpec)"
    )
    method: Literal["auto", "threshold", "alignearth", "optical", "ensemble"] = Field(
        "auto",
        description="flood members: auto (every member that can run: threshold always, "
        "alignearth where its weights are present, optical where post-event Sentinel-2 scenes "
        "exist), threshold (weights-free SAR), alignearth, optical (NDWI/MNDWI, plus the "
        "segmenter with weights), or ensemble (all three, AlignEarth weights required)",
    )

    def resolve_weights(self, optical: bool = False) -> None:
        """The SAR (or optical) encoder's and the upsampler's checkpoints, and the optical
        CLIP's with ``optical``; nothing for a ``factory`` segmenter (it finds its own)."""
        if self.factory:
            return
        from terrawatch.models.alignearth import sensor_profile
        from terrawatch.models.segearth import SIMFEATUP_WEIGHTS
        from terrawatch.models.weights import resolve_weights

        resolve_weights(sensor_profile(self.sensor, self.backbone).weights, self.weights)
        if self.upsampler == "simfeatup":
            resolve_weights(SIMFEATUP_WEIGHTS, self.upsampler_weights)
        if optical:
            resolve_weights(self.backbone, self.optical_weights)

    def spec(self, classes: ClassNames | list[str]) -> ModelSpec:
        """The spec of the SAR segmenter."""
        import dataclasses

        base = super().spec(classes)
        return dataclasses.replace(base, sensor=self.sensor, factory=self.factory)

    def optical_spec(self, classes: ClassNames | list[str]) -> ModelSpec:
        """The spec of the optical segmenter (same classes and settings, optical CLIP)."""
        import dataclasses

        base = super().spec(classes)
        return dataclasses.replace(
            base, weights=self.optical_weights, sensor="optical", factory=self.factory
        )


# --- align-sar --------------------------------------------------------------------------------


class PairSearchOptions(Options):
    """Optical scenes of the period and SAR passes close to them."""

    catalog: str = Field(
        "planetary-computer",
        description="planetary-computer (S2 L2A + S1 RTC), earth-search, a STAC API URL or a "
        "local folder",
    )
    optical_collections: list[str] | None = Field(
        None, description="optical collections (default: sentinel-2-l2a)"
    )
    sar_collections: list[str] | None = Field(
        None,
        description="SAR collections (default: sentinel-1-rtc on Planetary Computer, else "
        "sentinel-1-grd), searched max_days beyond the period on both sides",
    )
    max_days: float = Field(
        3.0, description="largest time between the optical and the SAR scene of a pair, days"
    )
    max_cloud: float | None = Field(
        20.0, description="max eo:cloud_cover of optical scenes in percent (none: no limit)"
    )
    max_items: int = Field(50, description="most scenes per sensor")


class ChipOptions(Options):
    """How the training chips are cut (the chip dataset is reused while these stay equal)."""

    dataset: Annotated[str | None, Cli(flag="--chips")] = Field(
        None, description="chip dataset path (default: OUT/chips.zarr)"
    )
    chip: int = Field(
        224, description="chip side in pixels (a multiple of the patch size 16; CLIP's 224)"
    )
    stride: int | None = Field(None, description="pixels between chips (default: the chip)")
    min_valid: float = Field(0.9, description="least valid fraction per sensor")
    holdout: float = Field(0.1, description="fraction of chip locations held out")
    loader: Loader = Field("odc", description=_LOADER_HELP)

    def request(
        self,
        search: PairSearchOptions,
        grid: GridOptions,
        sar: SarInputOptions,
        **where: Any,
    ) -> ChipRequest:
        """The chip request of an AOI and period (``aoi``, ``start``, ``end``).

        Raises:
            InputError: a bad AOI, date, collection list or option.
        """
        from terrawatch.tasks.alignearth.chips import ChipRequest

        return ChipRequest.build(
            **where,
            **search.model_dump(),
            **grid.model_dump(),
            orbit=sar.orbit,
            sar=sar.composite_options(),
            **self.model_dump(exclude={"dataset", "stride"}),
            stride=self.stride or self.chip,
        )


class TrainingOptions(Options):
    """The distillation run: length, batch, teacher, settings, checkpoints, device."""

    steps: int = Field(1000, description="train until this step (a resumed run counts on)")
    batch_size: int = Field(64, description="chip pairs per step")
    weights: str | None = Field(
        None, description="teacher CLIP checkpoint (default: OpenAI ViT-B/16 from the weights dir)"
    )
    settings: dict[str, float | int] | None = Field(
        None,
        description="DistillSettings overrides (lr, weight_infonce, weight_cls, weight_region, "
        "temperature, ...)",
    )
    resume: bool = Field(True, description="continue from the newest checkpoint in the out dir")
    eval_every: int = Field(100, description="held-out teacher-student cosine every N steps")
    save_every: int = Field(500, description="checkpoint every N steps (and at the end)")
    seed: int = Field(0, description="seed of the batch order")
    device: str | None = Field(
        None, description="torch device (default: cuda if available, else cpu)"
    )
    threads: int | None = Field(None, description="torch CPU threads (default: all cores)")
