"""Evaluation from a checkpoint: ``evaluate.py --checkpoint`` gives the numbers of ``train.py test``,
and ``predict.py`` on a split, scored by ``evaluate.py --predictions``, gives them again."""

import json
from pathlib import Path

import pytest
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "faster_rcnn" / "shapes.yaml"


def _common(root: Path, run: Path) -> list[str]:
    return [
        "--config", str(CONFIG), "--data.init_args.root", str(root), "--data.init_args.num_workers", "0",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(run), "--model.model.init_args.score_thresh", "0.0",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(shapes_root, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """A Faster R-CNN checkpoint after a few steps (keeping every detection) and its ``train.py test`` metrics."""
    run = tmp_path_factory.mktemp("frcnn")
    train = load_script("train")
    train.main([
        "fit", *_common(shapes_root.root, run), "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "1",
        "--checkpoint.dirpath", str(run / "ckpt"), "--last_checkpoint.dirpath", str(run / "ckpt"),
    ])  # fmt: skip
    checkpoint = run / "ckpt" / "last.ckpt"
    cli = train.main(["test", *_common(shapes_root.root, run), "--ckpt_path", str(checkpoint)])
    tested = {k.removeprefix("test/"): float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("test/")}
    return checkpoint, tested


def test_evaluate_checkpoint_equals_train_test_and_predict_then_evaluate(trained, shapes_root, tmp_path, capsys) -> None:
    checkpoint, tested = trained
    assert tested["map_50"] > 0  # a comparison of zeros would prove nothing
    evaluate = load_script("evaluate")
    out = tmp_path / "report"
    argv = ["--checkpoint", str(checkpoint), "--shapes", str(shapes_root.root), "--split", "test", "--num-workers", "0", "--no-progress"]
    assert evaluate.main([*argv, "--out", str(out), "--voc-results", str(tmp_path / "comp4")]) == 0
    from_checkpoint = json.loads((out / "metrics.json").read_text())
    assert from_checkpoint.keys() == tested.keys()
    for key, value in tested.items():
        assert from_checkpoint[key] == pytest.approx(value, abs=1e-9), key
    report = (out / "report.md").read_text()
    assert "checkpoint:" in report and "## Error analysis" in report and "| circle |" in report
    assert (tmp_path / "comp4" / "comp4_det_test_circle.txt").is_file()
    assert (out / "predictions" / "predictions.json").is_file()  # rescorable by others

    predict = load_script("predict")
    assert predict.main(["--checkpoint", str(checkpoint), "--shapes", str(shapes_root.root), "--split", "test",
                         "--out", str(tmp_path / "pred"), "--num-workers", "0", "--no-progress", "--no-draw"]) == 0  # fmt: skip
    rescored = tmp_path / "rescored"
    assert evaluate.main(["--predictions", str(tmp_path / "pred" / "predictions.json"), "--shapes", str(shapes_root.root),
                          "--split", "test", "--out", str(rescored), "--no-progress"]) == 0  # fmt: skip
    assert json.loads((rescored / "metrics.json").read_text()) == from_checkpoint


def test_evaluate_refuses_a_split_with_other_classes(trained, shapes_root, tmp_path, capsys) -> None:
    checkpoint, _ = trained
    code = load_script("evaluate").main([
        "--checkpoint", str(checkpoint), "--voc", str(shapes_root.voc_root), "--split", "test", "--classes", "a", "b",
        "--out", str(tmp_path / "r"), "--no-progress",
    ])  # fmt: skip
    assert code == 2 and "differ from the checkpoint's" in capsys.readouterr().err
