"""What a new user hits first, driven through the command line: one-line errors, fast listing, file modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tridense.catalog import source
from tridense.cli import NORMALS_DIR_DATASETS, main


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """``tridense ARGS`` in this process: exit status, stdout, stderr (argparse errors included)."""
    try:
        code = main(args)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def broken_package(tmp_path: Path) -> Path:
    """An exported package whose model.safetensors was cut short (a failed copy)."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")
    (package / "config.yaml").write_text("seed: 0\n")
    (package / "meta.json").write_text("{}")
    return package


def test_every_subcommand_answers_bad_values_with_one_line_and_status_2(
    tmp_path: Path, broken_package: Path, capsys: pytest.CaptureFixture
) -> None:
    existing = tmp_path / "exists.json"
    existing.write_text("{}")
    missing = str(tmp_path / "missing.ckpt")
    cases = {
        "max_time": (["train", "trainer.max_time=3min", f"run_dir={tmp_path / 'r1'}"], "DD:HH:MM:SS"),
        "unknown key": (["train", "trainer.max_step=3"], "max_steps"),
        "retest alone": (["train", "--retest"], "--resume"),
        "evaluate --set": (["evaluate", "--checkpoint", missing, "--dataset", "synthetic", "--set", "normals_dir=x"],
                           "valid keys"),
        "evaluate --crop": (["evaluate", "--checkpoint", missing, "--dataset", "synthetic", "--crop", "eigen"],
                            "eigen_nyu"),
        "evaluate --device gpu": (["evaluate", "--checkpoint", missing, "--dataset", "synthetic", "--device", "gpu"],
                                  "cuda"),
        "evaluate --json exists": (["evaluate", "--checkpoint", missing, "--dataset", "synthetic", "--json",
                                    str(existing)], "--overwrite"),
        "evaluate --limit 0": (["evaluate", "--checkpoint", missing, "--dataset", "synthetic", "--limit", "0"],
                               "positive"),
        "evaluate truncated package": (["evaluate", "--checkpoint", str(broken_package), "--dataset", "synthetic",
                                        "--set", "length=1"], "model.safetensors"),
        "predict --output-size": (["predict", "--checkpoint", missing, "x.png", "--out", str(tmp_path / "p"),
                                   "--output-size", "big"], "WIDTHxHEIGHT"),
        "predict --intrinsics": (["predict", "--checkpoint", missing, "x.png", "--out", str(tmp_path / "p"),
                                  "--intrinsics", "1,2"], "fx,fy,cx,cy"),
        "predict missing checkpoint": (["predict", "--checkpoint", missing, "x.png", "--out", str(tmp_path / "p")],
                                       "missing.ckpt"),
        "export": (["export", "--checkpoint", missing, "--out", str(tmp_path / "e")], "missing.ckpt"),
        "render --count": (["render", "--out", str(tmp_path / "r"), "--count", "0"], "positive"),
        "render --size": (["render", "--out", str(tmp_path / "r"), "--size", "4x4"], "8x8"),
        "prepare --dataset": (["prepare", "normals", "--dataset", "nyu", "--out", str(tmp_path / "n")], "nyuv2_raw"),
        "analyze pairs --set": (["analyze", "pairs", "--dataset", "synthetic", "--set", "normals_dir=x"],
                                "valid keys"),
        "analyze pairs --json exists": (["analyze", "pairs", "--dataset", "synthetic", "--json", str(existing)],
                                        "--overwrite"),
        "analyze affinity --point": (["analyze", "affinity", "--checkpoint", missing, "--image", "x.png",
                                      "--point", "a,b", "--out", str(tmp_path / "a.png")], "x,y"),
        "info --dataset": (["info", "--dataset", "nyu"], "nyuv2_labeled"),
        "no command": ([], "command"),
    }  # fmt: skip
    if not torch.cuda.is_available():
        cases["evaluate --device cuda"] = (
            ["evaluate", "--checkpoint", missing, "--dataset", "synthetic", "--device", "cuda"], "no CUDA GPU"
        )
    for name, (args, expected) in cases.items():
        code, _, err = _run(args, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (name, code, err)
        assert len(lines) == 1 and "Traceback" not in err, (name, err)
        assert expected in lines[0], (name, lines[0])
    # Nothing was left behind by the refused max_time: the same run_dir can be used once it is fixed.
    assert not (tmp_path / "r1").exists()


def test_errors_from_the_real_command_have_no_traceback(tmp_path: Path) -> None:
    args = ["evaluate", "--checkpoint", "x", "--dataset", "synthetic", "--crop", "eigen"]
    proc = subprocess.run([sys.executable, "-m", "tridense", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "eigen_kitti" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_encoder_suggests_close_timm_names(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = _run(["train", "model.encoder=resnet19", f"run_dir={tmp_path / 'run'}"], capsys)
    assert code == 2 and "resnet18" in err.splitlines()[-1]


def test_info_and_help_do_not_import_torch() -> None:
    """``tridense info`` and ``--help`` answer from the static catalog: torch, Lightning and timm stay out."""
    probe = (
        "import sys, contextlib, io\n"
        "from tridense.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['info'])\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'lightning', 'timm') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_static_catalog_matches_the_registries(capsys: pytest.CaptureFixture) -> None:
    from tridense import catalog

    # In a fresh interpreter: the registries as a user's process has them (tests register toy variants).
    script = "import json; from tridense.catalog import registered; print(json.dumps(registered()))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    tables = json.loads(proc.stdout)
    assert tables == {
        "MODELS": catalog.MODELS,
        "DATASETS": catalog.DATASETS,
        "CROPS": catalog.CROPS,
        "PROTOCOLS": catalog.PROTOCOLS,
        "METHODS": catalog.METHODS,
    }
    assert "MODELS: dict[str, str] = {" in source()
    code, out, _ = _run(["info"], capsys)
    assert code == 0 and all(name in out for name in catalog.MODELS)


def test_normals_dir_datasets_are_the_ones_that_read_it() -> None:
    import inspect

    from tridense.data.registry import DATASETS, dataset_class

    readers = [n for n in DATASETS if "normals_dir" in inspect.signature(dataset_class(n).__init__).parameters]
    assert sorted(readers) == sorted(NORMALS_DIR_DATASETS)


def test_render_writes_files_with_the_usual_mode_and_a_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    previous = os.umask(0o022)
    try:
        code, _, err = _run(["render", "--out", str(tmp_path / "r"), "--count", "2", "--size", "32x48"], capsys)
    finally:
        os.umask(previous)
    assert code == 0, err
    assert "render" in err and "2/2" in err  # the progress bar: name and count
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    assert files and all((p.stat().st_mode & 0o777) == 0o644 for p in files), [
        (p.name, oct(p.stat().st_mode)) for p in files
    ]
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["classes"]


def test_every_option_of_every_command_is_described() -> None:
    import argparse

    from tridense.cli import build_parser

    def parsers(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    undescribed = [
        f"{p.prog} {a.option_strings or a.dest}"
        for p in parsers(build_parser())
        for a in p._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert not undescribed
