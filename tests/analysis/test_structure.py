"""``tridense analyze structure`` on a tiny trained ASM checkpoint: the figure from a dataset sample (with
ground truth) and from an image alone; the error maps vanish where the compared maps agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tridense.analysis.structure import load_structure_matching, structure_analysis
from tridense.cli import main
from tridense.data.synthetic.dataset import SyntheticScenes
from tridense.errors import ConfigError
from tridense.training.config import load_config
from tridense.training.run import train
from tridense.viz import image_to_rgb

TINY = [
    "method.name=adversarial",
    "model.name=unet",
    "data.tasks=[depth]",
    "data.size=[32,48]",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.split_args={train: {length: 2}, val: {length: 2}, test: {length: 2}}",
    "trainer.max_steps=1",
    "trainer.progress_bar=false",
    "trainer.precision=32-true",
    "trainer.val_every_n_steps=null",
    "eval.panel_samples=0",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("asm") / "run"
    args = "method.args={adversary: asm, supervised_weight: 1.0, asm: {analyzer: {layers: 5, widths: [8, 8, 8]}}}"
    train(load_config(None, [*TINY, args, f"run_dir={run}"]))
    return run / "checkpoints" / "last.ckpt"


def test_figure_from_a_dataset_sample_and_from_an_image(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "gt.png"
    argv = ["analyze", "structure", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--split", "val"]
    assert main([*argv, "--index", "1", "--set", "length=2", "--out", str(out)]) == 0
    assert '"reference": "ground truth"' in capsys.readouterr().out
    with Image.open(out) as picture:
        assert picture.width > 5 * 100  # five error maps (conv1..conv5) side by side
    sample = SyntheticScenes("val", length=1, size=(32, 48))[0]
    image = tmp_path / "image.png"
    Image.fromarray(image_to_rgb(sample["image"], True)).save(image)
    assert (
        main(
            [
                "analyze",
                "structure",
                "--checkpoint",
                str(checkpoint),
                "--image",
                str(image),
                "--out",
                str(tmp_path / "i.png"),
            ]
        )
        == 0
    )
    assert '"reference": "reconstruction"' in capsys.readouterr().out
    assert (tmp_path / "i.png").is_file()


def test_errors_vanish_where_ground_truth_equals_the_prediction(checkpoint: Path) -> None:
    model, matching, info = load_structure_matching(checkpoint)
    image = SyntheticScenes("val", length=1, size=(32, 48))[0]["image"][None]
    with torch.no_grad():
        depth = model(image)["depth"]
    result = structure_analysis(model, matching, tuple(info["tasks"]), image, {"depth": depth})
    assert set(result["errors"]) == {f"conv{i}" for i in range(1, 6)}
    assert all(v < 1e-8 for v in result["mean_errors"].values())
    shifted = structure_analysis(
        model, matching, tuple(info["tasks"]), image, {"depth": depth * torch.linspace(0.5, 2, 48)}
    )
    assert shifted["mean_errors"]["conv1"] > 1e-4
    assert np.isfinite(result["reconstruction_target"]["depth"].numpy()).all()


def test_a_checkpoint_without_an_analyzer_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(load_config(None, [*TINY, "method.args={adversary: none, supervised_weight: 1.0}", f"run_dir={run}"]))
    with pytest.raises(ConfigError, match="adversary 'asm'"):
        load_structure_matching(run / "checkpoints" / "last.ckpt")
