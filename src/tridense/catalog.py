"""What ``tridense info`` lists, without importing torch: models, datasets, depth crops, evaluation protocols
and training methods.

A static copy of the registries (``tridense.models.registry``, ``tridense.data.registry``,
``tridense.metrics.functional.CROPS``, ``tridense.metrics.protocols.PROTOCOLS``,
``tridense.training.methods.METHODS``) so that ``tridense info`` answers at once instead of after the
seconds that importing torch and timm take. ``tests/test_catalog.py`` fails when a registry and this copy
differ; regenerate the copy with ``python -m tridense.catalog > src/tridense/catalog.py`` (then
``ruff format`` it).
"""

from __future__ import annotations

from pathlib import Path

MODELS: dict[str, str] = {
    "cross_stitch": "Baseline of PAP's Table 2: cross-stitch units in place of the affinity propagation.",
    "cspn": "Baseline of PAP's Table 2: convolutional spatial propagation (local) in place of PAP's.",
    "deeplab": "DeepLabV3 (ASPP) on a dilated timm encoder (smp), semseg logits.",
    "fcn": "FCN: dilated timm encoder (output stride 8) + conv classifier, semseg logits (ASM's base architecture).",
    "gad": "GAD (depth embedding, feature propagation, GAP, skip pyramid fusion); any encoder, ResNet-50 default.",
    "gad_resnet50": "GAD with the paper's ResNet-50 encoder (``encoder`` must stay resnet50).",
    "mtl_baseline": "Multi-task baseline: shared encoder, one FPN decoder + head per task (depth, normals, semseg).",
    "pap": "PAP network (affinity at 1/8, cross-task + task-specific propagation, reconstruction); any encoder.",
    "pap_resnet18": "PAP with a ResNet-18 encoder (the paper's ablation backbone).",
    "pap_resnet50": "PAP with a ResNet-50 encoder (the paper's comparison backbone).",
    "pap_vgg16_bn": "PAP with a VGG-16-BN encoder (the paper's surface-normal comparison).",
    "pspnet": "PSPNet (pyramid pooling) on a dilated timm encoder at output stride 8 (smp), semseg logits.",
    "single_depth": "Single-task depth network (encoder + FPN decoder).",
    "single_normals": "Single-task surface normal network (encoder + FPN decoder).",
    "single_semseg": "Single-task semantic segmentation network (encoder + FPN decoder).",
    "unet": "U-Net decoder over every level of a timm encoder (smp), semseg logits.",
}

DATASETS: dict[str, str] = {
    "folder": "the folder format of `tridense render`",
    "kitti": "KITTI depth with Eigen split file lists",
    "nyuv2_folder": "NYUD-v2 simple folder (nyu-mini)",
    "nyuv2_labeled": "NYUD-v2 nyu_depth_v2_labeled.mat + splits.mat (795/654)",
    "nyuv2_mtan": "NYUD-v2 288x384 .npy release (MTAN)",
    "nyuv2_multitask": "NYUD-v2 extracted multi-task layout (images/, depth/, ...)",
    "nyuv2_raw": "NYUD-v2 raw sync frames with a file list",
    "stanford2d3ds": "Stanford 2D-3D-S area_N/data folders, folds 1-3",
    "sunrgbd": "SUN RGB-D official per-frame folders",
    "synthetic": "procedural indoor rooms with exact ground truth (embedded default)",
    "voc2012": "PASCAL VOC 2012 VOCdevkit layout (palette PNGs, optional SBD train_aug)",
    "weizmann_horse": "Weizmann horse figure-ground (rgb/+figure_ground/ or horse/+mask/)",
}

CROPS: dict[str, str] = {
    "eigen_nyu": "NYU Depth V2 Eigen crop: rows 45:471, cols 41:601 at 480x640, scaled proportionally",
    "garg": "KITTI Garg crop: rows 0.40810811H:0.99189189H, cols 0.03594771W:0.96405229W",
    "eigen_kitti": "KITTI Eigen crop: rows 0.3324324H:0.91351351H, cols 0.0359477W:0.96405229W",
}

PROTOCOLS: dict[str, str] = {
    "eigen-nyu": "NYUv2 depth: Eigen crop, valid 1e-3 < g < 10 m, prediction clamped to [1e-3, 10], per image",
    "mtl-nyud": "NYUD-v2 multi-task (MTI-Net / InvPT): depth valid g > 0, no cap, no clamp, pixel-pooled rmse and rmse_log; normals pooled; mIoU over all classes (absent = 0)",
    "mtan-nyuv2": "NYUv2 288x384 release (MTAN / LibMTL): depth abs err and rel err pooled over g != 0, no clamp; normals mean, median, within 11.25/22.5/30; 13-class mIoU and pixel accuracy",
    "kitti-eigen-garg": "KITTI Eigen split: Garg crop placed in the full frame, valid 1e-3 < g < 80 m, prediction clamped to [1e-3, 80], per image; also BTS's silog on the same pixels",
    "kitti-eigen-garg-median": "kitti-eigen-garg with per-image median scaling (self-supervised monocular protocol)",
    "kitti-benchmark": "KITTI depth-prediction benchmark (devkit): silog, sq_rel, abs_rel, irmse per image over every g > 0, no cap, no crop, no clamp",
    "gad-per-image": "NYUD-v2 40-class segmentation as the GAD authors' release scores it: IoU per image, class IoU averaged over the images where it is non-zero, mean over all classes",
    "asm-2d3ds": "Stanford 2D-3D-S depth and normals as the ASM authors score them: pixel-pooled over the set; depth valid where the raw PNG != 65535 (g > 0), no cap, prediction clamped to [51/512, 26560/512] m, strict accuracies at 1.25^k for k = 1/8, 1/4, 1/2, 1, 2, 3; normals valid where the PNG != (128, 128, 128), mean / median angle and within 2.8125, 5.625, 11.25, 22.5, 30 degrees inclusive",
}

METHODS: dict[str, str] = {
    "adversarial": "Predictor and critic in a minimax (method ``adversarial``; see the module docstring).",
    "dense": "Train / validate / test a dense prediction model (method ``dense``).",
}


def registered() -> dict[str, dict[str, str]]:
    """The same tables read from the registries themselves (imports torch, timm)."""
    from tridense.data.registry import DATASETS as SPECS
    from tridense.metrics.functional import CROPS as CROP_SPECS
    from tridense.metrics.protocols import PROTOCOLS as PROTOCOL_SPECS
    from tridense.models.registry import describe_model, list_models
    from tridense.training.methods import METHODS as METHOD_CLASSES

    def first_line(obj: object) -> str:
        doc = (obj.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""

    return {
        "MODELS": {name: describe_model(name) for name in list_models()},
        "DATASETS": {name: SPECS[name].description for name in sorted(SPECS)},
        "CROPS": {name: crop.description for name, crop in CROP_SPECS.items()},
        "PROTOCOLS": {name: protocol.description for name, protocol in PROTOCOL_SPECS.items()},
        "METHODS": {name: first_line(cls) for name, cls in sorted(METHOD_CLASSES.items())},
    }


def source() -> str:
    """This module's source with the tables of :func:`registered`."""
    text = Path(__file__).read_text()
    start, end = text.index("MODELS: dict"), text.index("\n\ndef registered")
    blocks = []
    for name, table in registered().items():
        rows = "".join(f"    {key!r}: {value!r},\n" for key, value in table.items())
        blocks.append(f"{name}: dict[str, str] = {{\n{rows}}}")
    return text[:start] + "\n\n".join(blocks) + text[end:]


if __name__ == "__main__":
    print(source(), end="")
