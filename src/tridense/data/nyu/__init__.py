"""NYU Depth V2 (Silberman et al., ECCV 2012) in the on-disk releases that papers train and evaluate on.

==========================  ================================================  ===========================
loader                      release                                           tasks
==========================  ================================================  ===========================
:class:`NYUv2Labeled`       the official ``nyu_depth_v2_labeled.mat`` (v7.3)  depth, semseg (+normals)
:class:`NYUv2MultiTask`     the extracted multi-task layout ``NYUD_MT``       depth, normals, semseg
:class:`NYUv2Preprocessed`  the 288x384 ``.npy`` release of MTAN (Liu et al)  depth, normals, semseg (13)
:class:`NYUv2Raw`           the raw "sync" frames with a BTS-style file list  depth (+normals)
:class:`NYUv2Folder`        a plain folder of PNGs (``nyu-mini``)             depth, semseg (+normals)
==========================  ================================================  ===========================

Conventions shared by every loader (see :mod:`tridense.data.sample`): labels 0 = unlabeled become 255
(ignore) and classes 1..C become 0..C-1; depth is metres with 0 = invalid; normals are unit vectors in the
OpenCV camera frame (x right, y down, z forward; a surface facing the camera has n_z < 0), (0, 0, 0) =
invalid. Releases that store normals in another frame are converted by a fixed signed permutation, chosen
with the ``normals_frame`` argument (:data:`NORMAL_FRAMES`). ``K`` is the NYU colour camera
(:data:`NYU_INTRINSICS`, 640x480) carried through each release's crop and resize.

One module per release (:mod:`~tridense.data.nyu.labeled`, ``multitask``, ``preprocessed``, ``raw``,
``folder``); the constants and shared helpers live in :mod:`~tridense.data.nyu.common`.
"""

from tridense.data.nyu.common import (
    CLASS_NAMES,
    MTAN_CROP,
    MTAN_SIZE,
    NORMAL_FRAMES,
    NUM_LABELED,
    NUM_RAW_CLASSES,
    NYU13_CLASSES,
    NYU40_CLASSES,
    NYU_INTRINSICS,
    NYU_SIZE,
    NYU_STANDARD_CROP,
    NYUSplitRelease,
    crop_resize_K,
    decode_normals,
    mtan_K,
    nyu_K,
    read_class_mapping,
    read_normals_npy,
    read_normals_png_signed,
    read_normals_tridense,
    read_nyu_splits,
    shift_labels,
    to_camera_frame,
)
from tridense.data.nyu.folder import NYUv2Folder, read_index_csv
from tridense.data.nyu.labeled import NYUv2Labeled
from tridense.data.nyu.multitask import NYUv2MultiTask
from tridense.data.nyu.preprocessed import NYUv2Preprocessed
from tridense.data.nyu.raw import NYUv2Raw, parse_file_list, raw_normal_path

__all__ = [
    "CLASS_NAMES",
    "MTAN_CROP",
    "MTAN_SIZE",
    "NORMAL_FRAMES",
    "NUM_LABELED",
    "NUM_RAW_CLASSES",
    "NYU13_CLASSES",
    "NYU40_CLASSES",
    "NYU_INTRINSICS",
    "NYU_SIZE",
    "NYU_STANDARD_CROP",
    "NYUSplitRelease",
    "NYUv2Folder",
    "NYUv2Labeled",
    "NYUv2MultiTask",
    "NYUv2Preprocessed",
    "NYUv2Raw",
    "crop_resize_K",
    "decode_normals",
    "mtan_K",
    "nyu_K",
    "parse_file_list",
    "raw_normal_path",
    "read_class_mapping",
    "read_index_csv",
    "read_normals_npy",
    "read_normals_png_signed",
    "read_normals_tridense",
    "read_nyu_splits",
    "shift_labels",
    "to_camera_frame",
]
