"""``terrawatch doctor``: one screen saying what this installation can run, and why not.

A first run on a new site meets missing weights, no GPU, an unreachable scheduler or catalog
one at a time, each after minutes of start-up. The doctor checks them all in seconds, without
loading a model: each weight file (present, size, SHA-256 against the registry where the
publisher gives one, a cheap look at its container header), torch and CUDA, dask-cuda, the Dask
address, the Prefect API, the catalog, and the versions of the key packages. The exit code is
non-zero when the main job (``terrawatch landcover`` with default settings and the given
``--catalog``) cannot run: the exit code of the error that run would end with (5 weights
missing, 7 weights corrupt, 6 catalog unreachable, 1 scheduler or API unreachable).

Network checks use short timeouts and respect offline mode: with ``TERRAWATCH_OFFLINE=1`` only
loopback URLs are contacted, as in the catalog search.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

NETWORK_TIMEOUT_S = 5.0
"""Per request: enough for a healthy API, short enough for a one-screen check."""
KEY_PACKAGES = (
    "terrawatch", "torch", "torchvision", "open_clip_torch", "transformers", "prefect",
    "prefect-dask", "dask", "distributed", "dask-cuda", "xarray", "rioxarray", "zarr",
    "odc-stac", "pystac-client", "rasterio",
)  # fmt: skip
OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "info"


@dataclass
class Check:
    """One line of the report."""

    section: str
    name: str
    status: str
    """``ok``, ``warn`` (works, but worth knowing), ``FAIL`` or ``info``."""
    detail: str
    blocks_main_job: bool = False
    """True when ``terrawatch landcover`` with default settings cannot run because of this."""
    exit_code: int = 0
    """The exit code that run would end with (0 unless it blocks the main job)."""


@dataclass
class Report:
    """Every check, and whether the main job can run."""

    checks: list[Check] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.checks.append(Check(*args, **kwargs))

    @property
    def blockers(self) -> list[Check]:
        return [check for check in self.checks if check.blocks_main_job]

    @property
    def exit_code(self) -> int:
        return self.blockers[0].exit_code if self.blockers else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "main_job": {
                "command": "terrawatch landcover (default settings)",
                "can_run": not self.blockers,
                "blocked_by": [f"{c.section}: {c.name}" for c in self.blockers],
            },
            "exit_code": self.exit_code,
            "checks": [asdict(check) for check in self.checks],
        }

    def to_text(self) -> str:
        lines, section = [], None
        for check in self.checks:
            if check.section != section:
                section = check.section
                lines.append(f"{section}:")
            name = check.name if len(check.name) <= 30 else "..." + check.name[-27:]
            lines.append(f"  [{check.status:4s}] {name:30s} {check.detail}")
        if self.blockers:
            names = "; ".join(f"{c.section} {c.name}" for c in self.blockers)
            lines.append(f"main job (terrawatch landcover, default settings): CANNOT RUN: {names}")
        else:
            lines.append("main job (terrawatch landcover, default settings): can run")
        return "\n".join(lines)


def add_doctor_command(sub: argparse._SubParsersAction) -> None:
    """Register the ``doctor`` sub-command (standard library only: ``--help`` stays fast)."""
    p = sub.add_parser(
        "doctor",
        help="check weights, GPU, Dask, Prefect and catalogs: what this installation can run",
    )
    p.add_argument(
        "--catalog",
        default="earth-search",
        help="catalog the main job would search: earth-search, planetary-computer, a STAC API "
        "URL or a local catalog folder (default: earth-search)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=run_doctor_command)


def run_doctor_command(args: argparse.Namespace) -> int:
    """Run every check, print the report, return the main job's exit code (0: it can run)."""
    report = diagnose(args.catalog)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.to_text())
    return report.exit_code


def diagnose(catalog: str = "earth-search") -> Report:
    """All checks, in the order of the report."""
    report = Report()
    _check_weights(report)
    _check_compute(report)
    _check_dask(report)
    _check_prefect(report)
    _check_catalogs(report, catalog)
    _check_versions(report)
    return report


# --- weights ----------------------------------------------------------------------------------


def _check_weights(report: Report) -> None:
    from terrawatch.errors import WeightsCorruptError, WeightsNotFoundError
    from terrawatch.models.hf_weights import CONFIG_FILE, HF_REGISTRY, WEIGHTS_FILE
    from terrawatch.models.settings import DEFAULT_BACKBONE
    from terrawatch.models.weights import REGISTRY, file_sha256, is_offline, weights_dir

    root = weights_dir()
    offline = is_offline()
    report.add("weights", "weights directory", INFO, f"{root} (offline: {offline})")
    needed = {DEFAULT_BACKBONE, "simfeatup-jbu-one-million-aid"}  # landcover's defaults
    for entry in REGISTRY.values():
        path = root / entry.filename
        main = entry.name in needed
        if not path.is_file():
            if not main:
                report.add("weights", entry.name, INFO, f"missing (optional, {entry.size})")
            elif offline:
                report.add(
                    "weights", entry.name, FAIL,
                    f"missing ({entry.size}): `terrawatch weights fetch {entry.name}` where there "
                    "is internet, then copy it here",
                    blocks_main_job=True, exit_code=WeightsNotFoundError.exit_code,
                )  # fmt: skip
            else:
                report.add(
                    "weights", entry.name, WARN,
                    f"missing: downloaded on first use ({entry.size})",
                )  # fmt: skip
            continue
        size = _size(path.stat().st_size)
        problem = _header_problem(path, "zip")
        if problem:
            report.add(
                "weights", entry.name, FAIL, f"{entry.filename} ({size}) unloadable: {problem}",
                blocks_main_job=main, exit_code=WeightsCorruptError.exit_code if main else 0,
            )  # fmt: skip
        elif entry.sha256_prefix:
            digest = file_sha256(path)
            if digest.startswith(entry.sha256_prefix):
                report.add("weights", entry.name, OK, f"{entry.filename}, {size}, sha256 ok")
            else:
                report.add(
                    "weights", entry.name, WARN,
                    f"{entry.filename}, {size}: sha256 {digest[:12]}... is not the published "
                    f"{entry.sha256_prefix[:12]}... (another or a damaged file?)",
                )  # fmt: skip
        else:
            report.add("weights", entry.name, OK, f"{entry.filename}, {size}, no published sha256")
    for hf in HF_REGISTRY.values():
        folder = root / hf.name
        weights = folder / WEIGHTS_FILE
        if not ((folder / CONFIG_FILE).is_file() and weights.is_file()):
            report.add(
                "weights", hf.name, INFO,
                f"missing (optional, change detection; {hf.size})",
            )  # fmt: skip
            continue
        problem = _header_problem(weights, "safetensors")
        size = _size(weights.stat().st_size)
        if problem:
            report.add(
                "weights", hf.name, FAIL, f"{WEIGHTS_FILE} ({size}) is not loadable: {problem}"
            )
        else:
            report.add("weights", hf.name, OK, f"{hf.name}/, {size}, safetensors header ok")
    report.add("weights", "change detection steps", INFO, _change_steps())


def _change_steps() -> str:
    from terrawatch.tasks.change.steps import choose_steps

    steps = choose_steps("auto", "auto")
    return f"change --proposer/--comparator auto = {steps.proposer} + {steps.comparator}"


def _header_problem(path: Path, kind: str) -> str | None:
    """Why the file cannot be a checkpoint of ``kind`` (cheap: headers only), else None.

    ``zip``: ``torch.save`` files, TorchScript archives and Lightning checkpoints are zip
    archives holding a ``data.pkl`` (torch >= 1.6). ``safetensors``: an 8-byte little-endian
    length, then that many bytes of a JSON header.
    """
    try:
        if kind == "zip":
            if not zipfile.is_zipfile(path):
                return "not a torch checkpoint (no zip archive; truncated download?)"
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if not any(name.endswith("data.pkl") for name in names):
                return "zip archive without data.pkl (not written by torch.save)"
            return None
        with path.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                return "shorter than a safetensors header"
            (length,) = struct.unpack("<Q", raw)
            if length > min(path.stat().st_size - 8, 100 << 20):
                return "safetensors header length beyond the file (truncated?)"
            json.loads(handle.read(length))
        return None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        return f"{type(err).__name__}: {err}"


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


# --- compute ----------------------------------------------------------------------------------


def _check_compute(report: Report) -> None:
    import importlib.util

    import torch

    report.add("compute", "torch", INFO, f"{torch.__version__} (CUDA build: {torch.version.cuda})")
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        report.add("compute", "GPU", OK, f"{len(names)}: {', '.join(names)}")
    else:
        report.add("compute", "GPU", INFO, "none (CUDA unavailable): models run on the CPU")
    has_dask_cuda = importlib.util.find_spec("dask_cuda") is not None
    if torch.cuda.is_available() and not has_dask_cuda:
        report.add(
            "compute", "dask-cuda", WARN,
            "not installed: flows use a CPU LocalCluster; `pip install dask-cuda` for one "
            "worker per GPU",
        )  # fmt: skip
    else:
        report.add("compute", "dask-cuda", INFO, "installed" if has_dask_cuda else "not installed")


def _check_dask(report: Report) -> None:
    from terrawatch.flows.runner import DASK_ADDRESS_ENV, _has_cuda, _has_dask_cuda

    address = os.environ.get(DASK_ADDRESS_ENV, "").strip()
    if not address:
        kind = "LocalCUDACluster" if _has_cuda() and _has_dask_cuda() else "LocalCluster"
        report.add(
            "dask", "scheduler", INFO, f"${DASK_ADDRESS_ENV} unset: each run starts a {kind}"
        )
        return
    from terrawatch.errors import InputError
    from terrawatch.flows.dask_tls import check_dask_tls

    try:
        check_dask_tls(address, f"${DASK_ADDRESS_ENV}")
    except InputError as err:  # a tls:// scheduler the runs could not reach (deploy/README.md)
        report.add("dask", "tls", FAIL, str(err), blocks_main_job=True, exit_code=err.exit_code)
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    problem = _tcp_problem(parsed.hostname or "", parsed.port or 8786)
    if problem:
        report.add(
            "dask", "scheduler", FAIL,
            f"${DASK_ADDRESS_ENV}={address} unreachable ({problem}); start the scheduler or "
            f"unset {DASK_ADDRESS_ENV} for a local cluster",
            blocks_main_job=True, exit_code=1,
        )  # fmt: skip
    else:
        report.add("dask", "scheduler", OK, f"${DASK_ADDRESS_ENV}={address} reachable")


def _tcp_problem(host: str, port: int) -> str | None:
    if _offline() and host not in {"localhost", "127.0.0.1", "::1"}:
        return "not contacted: offline mode (TERRAWATCH_OFFLINE=1)"
    try:
        with socket.create_connection((host, port), timeout=NETWORK_TIMEOUT_S):
            return None
    except OSError as err:
        return str(err) or type(err).__name__


def _check_prefect(report: Report) -> None:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        report.add(
            "prefect", "API", INFO,
            "PREFECT_API_URL unset: each run starts a temporary local server (ephemeral)",
        )  # fmt: skip
        return
    problem = _http_problem(url.rstrip("/") + "/health")
    if problem:
        report.add(
            "prefect", "API", FAIL,
            f"PREFECT_API_URL={url} unreachable ({problem}); start the server or unset "
            "PREFECT_API_URL to run with a temporary local one",
            blocks_main_job=True, exit_code=1,
        )  # fmt: skip
    else:
        report.add("prefect", "API", OK, f"PREFECT_API_URL={url} healthy")


# --- catalogs ---------------------------------------------------------------------------------


def _check_catalogs(report: Report, main_catalog: str) -> None:
    from terrawatch.errors import CatalogUnreachableError
    from terrawatch.tasks.core.catalog import CATALOGS

    targets = dict.fromkeys([main_catalog, *CATALOGS])
    for name in targets:
        main = name == main_catalog
        url = CATALOGS[name].url if name in CATALOGS else name
        label = f"{name} (main job)" if main else name
        if "://" not in url:
            problem = _folder_problem(Path(url))
            what = f"local catalog {url}"
        else:
            problem = _http_problem(url)
            what = url
        if problem is None:
            report.add("catalogs", label, OK, f"{what} answers")
            continue
        if not main and problem.startswith("not contacted"):
            report.add("catalogs", label, INFO, f"{what}: {problem}")
            continue
        hint = "" if "://" not in url else "; offline: --catalog DIR (a local catalog)"
        report.add(
            "catalogs", label, FAIL if main else WARN, f"{what}: {problem}{hint}",
            blocks_main_job=main, exit_code=CatalogUnreachableError.exit_code if main else 0,
        )  # fmt: skip


def _folder_problem(path: Path) -> str | None:
    if not path.is_dir():
        return "no such folder (make one with `terrawatch catalog add IMAGE.tif --catalog DIR`)"
    if not (path / "catalog.json").is_file() and not any(path.rglob("*.json")):
        return "holds no STAC JSON (add images with `terrawatch catalog add`)"
    return None


def _offline() -> bool:
    from terrawatch.models.weights import is_offline

    return is_offline()


def _http_problem(url: str) -> str | None:
    """None when ``url`` answers a GET with 2xx/3xx within the timeout, else why not."""
    import urllib.error
    import urllib.request

    if _offline() and urlparse(url).hostname not in {"localhost", "127.0.0.1", "::1"}:
        return "not contacted: offline mode (TERRAWATCH_OFFLINE=1)"
    request = urllib.request.Request(url, headers={"User-Agent": "terrawatch-doctor"})
    try:
        with urllib.request.urlopen(request, timeout=NETWORK_TIMEOUT_S) as response:
            response.read(1)
            return None
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code} {err.reason}"
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        return f"unreachable: {reason}"


# --- versions ---------------------------------------------------------------------------------


def _check_versions(report: Report) -> None:
    report.add("versions", "python", INFO, sys.version.split()[0])
    found, missing = [], []
    for package in KEY_PACKAGES:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            missing.append(package)
    for start in range(0, len(found), 4):
        report.add(
            "versions", "packages" if start == 0 else "", INFO, ", ".join(found[start : start + 4])
        )
    if missing:
        report.add("versions", "not installed", INFO, ", ".join(missing))
