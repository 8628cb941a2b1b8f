"""Named evaluation protocols: every convention of a published evaluation fixed together under one name.

A :class:`Protocol` is data: the depth validity range and its bounds, the clamp of predictions, the crop,
the reduction, the scaling and the reported keys; the KITTI benchmark metrics' own conventions; the normal
thresholds; the segmentation absent-class policy or the per-image protocol. :data:`PROTOCOLS` is the table
(``tridense info`` lists it, ``tridense evaluate --protocol NAME`` and ``eval.protocol`` select from it);
:func:`register_protocol` adds one . Every entry
cites the source code it equals; ``docs/metrics.md`` says which papers report under it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tridense.errors import ConfigError
from tridense.metrics.functional import (
    DEFAULT_NORMAL_THRESHOLDS,
    DEPTH_KEYS,
    check_absent,
    check_depth_keys,
    check_depth_options,
    check_depth_range,
    check_reduction,
    check_thresholds,
    crop_mask,
)


@dataclass(frozen=True)
class DepthConvention:
    """How depth is scored (the arguments of :func:`~tridense.metrics.functional.depth_metrics`)."""

    min_depth: float = 1e-3
    max_depth: float | None = 10.0
    bounds: str = "strict"
    clamp: bool | tuple[float, float] = True
    crop: str | None = None
    reduction: str = "image"
    scaling: str | None = None
    keys: tuple[str, ...] = DEPTH_KEYS

    def __post_init__(self) -> None:
        check_depth_range(self.min_depth, self.max_depth)
        check_depth_options(self.bounds, self.clamp, self.scaling)
        check_reduction(self.reduction)
        check_depth_keys(self.keys)
        if self.crop is not None:
            crop_mask(self.crop, 1, 1)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~tridense.metrics.DepthMetrics`."""
        return dataclasses.asdict(self)


#: The KITTI devkit's conventions (``evaluate_depth.cpp``): every g > 0 valid, no cap, no crop, no clamp.
DEVKIT = DepthConvention(min_depth=0.0, max_depth=None, clamp=False, crop=None, reduction="image")


@dataclass(frozen=True)
class SegmentationConvention:
    """How segmentation is scored: pooled confusion matrix with an absent-class policy, or per image (GAD)."""

    absent: str = "skip"
    per_image: bool = False
    #: Reported keys (None: all); the per-class ``iou`` list is always kept.
    keys: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_absent(self.absent)


@dataclass(frozen=True)
class Protocol:
    """One named evaluation protocol.

    Attributes:
        name: the name used on the command line and in configs.
        description: one line: what it fixes.
        source: the reference code it equals (file and function).
        papers: papers that report under it.
        depth: depth conventions (None: depth is not scored under this protocol).
        kitti: conventions of the KITTI benchmark metrics (``silog``, ...), None = not reported.
        normal_thresholds: angles of ``within_<T>``; None: normals are not scored.
        normal_keys: reported normal metrics (None: all), so that e.g. Δ_MTL sees the source's metric set.
        segmentation: segmentation conventions; None: segmentation is not scored.
        depth_accuracy: exponents k of extra depth accuracies ``delta<k>`` (max(p/g, g/p) < 1.25^k, strict) on
            the pixels and clamp of ``depth``, reported with the depth metrics (ASM's 1/8, 1/4, 1/2); None: none.
        normal_inclusive: count ``within_<T>`` as angle <= T (the ASM benchmark) instead of angle < T.
    """

    name: str
    description: str
    source: str
    papers: tuple[str, ...] = ()
    depth: DepthConvention | None = field(default_factory=DepthConvention)
    kitti: DepthConvention | None = None
    normal_thresholds: tuple[float, ...] | None = DEFAULT_NORMAL_THRESHOLDS
    normal_keys: tuple[str, ...] | None = None
    segmentation: SegmentationConvention | None = field(default_factory=SegmentationConvention)
    depth_accuracy: tuple[float, ...] | None = None
    normal_inclusive: bool = False

    def __post_init__(self) -> None:
        if self.normal_thresholds is not None:
            check_thresholds(self.normal_thresholds)
        if self.depth_accuracy is not None and self.depth is None:
            raise ValueError(f"protocol {self.name!r}: depth_accuracy needs the depth conventions")

    def tasks(self) -> tuple[str, ...]:
        """The tasks this protocol scores."""
        scored = {"depth": self.depth or self.kitti, "normals": self.normal_thresholds, "semseg": self.segmentation}
        return tuple(t for t, v in scored.items() if v is not None)

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain data (recorded next to the numbers it produced)."""
        return dataclasses.asdict(self)


#: The protocol table; :func:`register_protocol` adds to it.
PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add ``protocol`` to :data:`PROTOCOLS` (a name may be registered once)."""
    if protocol.name in PROTOCOLS:
        raise ValueError(f"evaluation protocol {protocol.name!r} is already registered")
    PROTOCOLS[protocol.name] = protocol
    return protocol


def get_protocol(protocol: str | Protocol) -> Protocol:
    """The protocol of that name (a :class:`Protocol` passes through); ConfigError listing the names."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def protocol_names() -> Sequence[str]:
    """Registered protocol names, in registration order."""
    return tuple(PROTOCOLS)


# ------------------------------------------------------------------------------------------ the table
register_protocol(
    Protocol(
        name="eigen-nyu",
        description="NYUv2 depth: Eigen crop, valid 1e-3 < g < 10 m, prediction clamped to [1e-3, 10], per image",
        source="BTS bts_eval.py (compute_errors, eigen_crop); Eigen et al. 2014",
        papers=("Eigen et al. 2014", "Laina et al. 2016", "BTS (Lee et al. 2019)", "AdaBins", "PAP (Table 3)"),
        depth=DepthConvention(min_depth=1e-3, max_depth=10.0, clamp=True, crop="eigen_nyu", reduction="image"),
        normal_thresholds=None,
        segmentation=None,
    )
)
register_protocol(
    Protocol(
        name="mtl-nyud",
        description="NYUD-v2 multi-task (MTI-Net / InvPT): depth valid g > 0, no cap, no clamp, pixel-pooled "
        "rmse and rmse_log; normals pooled; mIoU over all classes (absent = 0)",
        source="Multi-Task-Learning-PyTorch evaluation/eval_depth.py (eval_depth), eval_normals.py "
        "(eval_normals), eval_semseg.py (eval_semseg); Multi-Task-Transformer DepthMeter",
        papers=("MTI-Net (Vandenhende et al. 2020)", "InvPT", "TaskPrompter"),
        depth=DepthConvention(
            min_depth=0.0, max_depth=None, clamp=False, reduction="pixel", keys=("rmse", "rmse_log")
        ),
        segmentation=SegmentationConvention(absent="zero", keys=("miou",)),
    )
)
register_protocol(
    Protocol(
        name="mtan-nyuv2",
        description="NYUv2 288x384 release (MTAN / LibMTL): depth abs err and rel err pooled over g != 0, no "
        "clamp; normals mean, median, within 11.25/22.5/30; 13-class mIoU and pixel accuracy",
        source="LibMTL examples/nyu/utils.py (DepthMetric, NormalMetric, SegMetric) and LibMTL/metrics.py",
        papers=("MTAN (Liu et al. 2019)", "LibMTL benchmarks", "Nash-MTL", "CAGrad"),
        depth=DepthConvention(
            min_depth=0.0, max_depth=None, clamp=False, reduction="pixel", keys=("abs_err", "abs_rel")
        ),
        normal_keys=("mean", "median", "within_11.25", "within_22.5", "within_30"),
        segmentation=SegmentationConvention(absent="skip", keys=("miou", "pixel_acc")),
    )
)
register_protocol(
    Protocol(
        name="kitti-eigen-garg",
        description="KITTI Eigen split: Garg crop placed in the full frame, valid 1e-3 < g < 80 m, prediction "
        "clamped to [1e-3, 80], per image; also BTS's silog on the same pixels",
        source="BTS bts_eval.py (compute_errors, garg_crop); monodepth2 evaluate_depth.py (compute_errors)",
        papers=("BTS (Lee et al. 2019)", "AdaBins", "tridense configs/pap/table7 (local Eigen-split proxy)"),
        depth=DepthConvention(min_depth=1e-3, max_depth=80.0, clamp=True, crop="garg", reduction="image"),
        kitti=DepthConvention(min_depth=1e-3, max_depth=80.0, clamp=True, crop="garg", reduction="image"),
        normal_thresholds=None,
        segmentation=None,
    )
)
register_protocol(
    Protocol(
        name="kitti-eigen-garg-median",
        description="kitti-eigen-garg with per-image median scaling (self-supervised monocular protocol)",
        source="monodepth2 evaluate_depth.py (evaluate: ratio = median(gt) / median(pred); compute_errors)",
        papers=("Zhou et al. 2017", "monodepth2 (monocular rows)"),
        depth=DepthConvention(
            min_depth=1e-3, max_depth=80.0, clamp=True, crop="garg", reduction="image", scaling="median"
        ),
        normal_thresholds=None,
        segmentation=None,
    )
)
register_protocol(
    Protocol(
        name="kitti-benchmark",
        description="KITTI depth-prediction benchmark (devkit): silog, sq_rel, abs_rel, irmse per image over "
        "every g > 0, no cap, no crop, no clamp",
        source="KITTI depth devkit cpp/evaluate_depth.cpp (depthError) and utils",
        papers=("KITTI online leaderboard", "PAP (Table 7)"),
        depth=None,
        kitti=DEVKIT,
        normal_thresholds=None,
        segmentation=None,
    )
)
register_protocol(
    Protocol(
        name="gad-per-image",
        description="NYUD-v2 40-class segmentation as the GAD authors' release scores it: IoU per image, "
        "class IoU averaged over the images where it is non-zero, mean over all classes",
        source="JianboJiao/semseggap main.py (get_iou, accuracy)",
        papers=("GAD (Jiao et al. 2019, Tables 1-5)",),
        depth=None,
        normal_thresholds=None,
        segmentation=SegmentationConvention(per_image=True),
    )
)
register_protocol(
    Protocol(
        name="asm-2d3ds",
        description="Stanford 2D-3D-S depth and normals as the ASM authors score them: pixel-pooled over the set; "
        "depth valid where the raw PNG != 65535 (g > 0), no cap, prediction clamped to [51/512, 26560/512] m, "
        "strict accuracies at 1.25^k for k = 1/8, 1/4, 1/2, 1, 2, 3; normals valid where the PNG != "
        "(128, 128, 128), mean / median angle and within 2.8125, 5.625, 11.25, 22.5, 30 degrees inclusive",
        source="twke18/Adversarial_Structure_Matching benchmark_stanford_scenes.py (depth and normal benchmarks)",
        papers=("ASM (Hwang et al. 2019, Tables 3 and 4)",),
        depth=DepthConvention(
            min_depth=0.0,
            max_depth=None,
            clamp=(51.0 / 512.0, 26560.0 / 512.0),
            reduction="pixel",
            keys=("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3"),
        ),
        depth_accuracy=(0.125, 0.25, 0.5),
        normal_thresholds=(2.8125, 5.625, 11.25, 22.5, 30.0),
        normal_keys=("mean", "median", "within_2.8125", "within_5.625", "within_11.25", "within_22.5", "within_30"),
        normal_inclusive=True,
        segmentation=None,
    )
)
