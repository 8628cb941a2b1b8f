"""Evaluation metrics: pure functions (:mod:`.functional`), torchmetrics classes and multi-task tools.

Units: depth ``abs_rel``, ``delta1..3`` and the segmentation scores are fractions in [0, 1]; depth
``rmse`` and ``sq_rel`` are metres; KITTI ``silog``, ``sq_rel``, ``abs_rel`` and normal ``within_<T>`` are
percent; angles are degrees; KITTI ``irmse`` is 1/km. The formulas are in ``docs/metrics.md``.
"""

from tridense.metrics.base import StatsMetric
from tridense.metrics.depth import DepthMetrics, KittiMetrics
from tridense.metrics.functional import (
    ABSENT_POLICIES,
    ALL_DEPTH_KEYS,
    BOUNDS,
    CROPS,
    DEFAULT_NORMAL_THRESHOLDS,
    DEPTH_KEYS,
    FINE_NORMAL_THRESHOLDS,
    KITTI_KEYS,
    NORMAL_BIN_WIDTH,
    REDUCTIONS,
    SEGMENTATION_KEYS,
    Crop,
    crop_mask,
    depth_metrics,
    frame_crop_mask,
    image_segmentation_metrics,
    kitti_metrics,
    normal_angles,
    normal_metrics,
    segmentation_metrics,
    within_key,
)
from tridense.metrics.multitask import (
    DELTA_MTL_CONVENTIONS,
    LOWER_IS_BETTER,
    TaskMetrics,
    delta_mtl,
    flatten_results,
    is_lower_better,
)
from tridense.metrics.normals import NormalMetrics
from tridense.metrics.protocols import PROTOCOLS, Protocol, get_protocol, register_protocol
from tridense.metrics.segmentation import ImageSegmentationMetrics, SegmentationMetrics

__all__ = [
    "ABSENT_POLICIES",
    "ALL_DEPTH_KEYS",
    "BOUNDS",
    "CROPS",
    "DEFAULT_NORMAL_THRESHOLDS",
    "DELTA_MTL_CONVENTIONS",
    "DEPTH_KEYS",
    "FINE_NORMAL_THRESHOLDS",
    "KITTI_KEYS",
    "LOWER_IS_BETTER",
    "NORMAL_BIN_WIDTH",
    "PROTOCOLS",
    "REDUCTIONS",
    "SEGMENTATION_KEYS",
    "Crop",
    "DepthMetrics",
    "ImageSegmentationMetrics",
    "KittiMetrics",
    "NormalMetrics",
    "Protocol",
    "SegmentationMetrics",
    "StatsMetric",
    "TaskMetrics",
    "crop_mask",
    "delta_mtl",
    "depth_metrics",
    "flatten_results",
    "frame_crop_mask",
    "get_protocol",
    "image_segmentation_metrics",
    "is_lower_better",
    "kitti_metrics",
    "normal_angles",
    "normal_metrics",
    "register_protocol",
    "segmentation_metrics",
    "within_key",
]
