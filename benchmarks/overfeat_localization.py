"""OverFeat localization vs the single-window localization head, then one vs many test scales, and
the choice of the windows kept per view and the merge threshold on the validation split.

Both ``configs/overfeat/shapes.yaml`` and ``configs/localization/shapes.yaml`` train through
``scripts/train.py fit`` (``benchmarks.runs.fit``, a subprocess) on the same single-object shapes
(``data/shapes_single_4000``: 4,000 training, 200 validation and 500 test images, generated when
missing), each within 10 minutes of wall time (``--trainer.max_time``; the configs themselves end
by epochs), into a temporary directory. Each best checkpoint (``last.ckpt`` when no validation ran
within the budget) is scored on the test split with ``ClsLocEvaluator`` (top-1 guess: class right
and IoU >= 0.5; issue 24 asks OverFeat for 0.95).

OverFeat runs once per image and view (scale x flip); the cached views are reused for every test
setting (``OverFeat.view_outputs`` / ``merge_views``): one scale (the window's) vs the configured
scales, each without and with flips. Then ``tune`` scores every ``(pre_merge_top_n,
merge_threshold)`` of the grid on the validation split, the way the config's values were chosen.

    OMP_NUM_THREADS=1 python -m benchmarks run overfeat_localization [--quick]

Figures: ``overfeat.test.<setting>`` and ``localization_head.test``, each ``{cls_loc_accuracy,
cls_accuracy, mean_iou}`` (settings ``one_scale``, ``one_scale_flips``, ``multi_scale_merge``,
``multi_scale_flips_merge``), with ``epochs``, ``train_min``; ``tune``: ``grid`` (``merge_threshold``,
and per n ``pre_merge_top_n_<n>`` the ``cls_loc_accuracy`` at each threshold) and the chosen
``pre_merge_top_n``, ``merge_threshold``, ``value``.
The quick run trains OverFeat only.
"""

import itertools
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from benchmarks.runs import QUICK_TRAIN, REPO, epochs_done, fit, single_object_shapes, tiny_shapes
from datasets.shapes import SHAPE_CLASSES
from datasets.voc import VOCDetection
from detection.checkpoint import load_detector
from detection.evaluation import ClsLocEvaluator, VOCEvaluator
from detection.overfeat import OverFeat

CONFIG = REPO / "configs" / "overfeat" / "shapes.yaml"
BASELINE = REPO / "configs" / "localization" / "shapes.yaml"
MINUTES = 10.0  # training budget per config
TUNE_KS = (1, 2, 3)
TUNE_TOP_NS = (1, 3, 5, 10, 50)
TUNE_THRESHOLDS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.5)
METRICS = ("cls_loc_accuracy", "cls_accuracy", "mean_iou")

View = tuple[Tensor, Tensor]


# ----------------------------------------------------------------------------- training
def train(config: Path, root: Path, work: Path, *, minutes: float, quick: bool) -> tuple[Path, dict]:
    """``config`` trained on ``root`` within ``minutes`` -> ``(its checkpoint, {epochs, train_min})``:
    ``best.ckpt``, or ``last.ckpt`` when no validation ran within the budget."""
    extra = [f"--data.init_args.root={root}"]
    if quick:
        extra += [*QUICK_TRAIN, "--trainer.check_val_every_n_epoch", "1"]  # a checkpoint after the one epoch
    run_dir, seconds = fit(config, work / config.parent.name, extra, minutes=minutes)
    checkpoints = run_dir / "checkpoints"
    checkpoint = checkpoints / "best.ckpt" if (checkpoints / "best.ckpt").is_file() else checkpoints / "last.ckpt"
    if not checkpoint.is_file():
        raise RuntimeError(f"{config}: no checkpoint in {checkpoints}: the budget of {minutes:g} min ended within the first epoch")
    return checkpoint, {"epochs": epochs_done(run_dir), "train_min": round(seconds / 60, 2)}


# ----------------------------------------------------------------------------- scoring
def split_reader(data: Path, split: str) -> VOCDetection:
    return VOCDetection(data / "VOC", split, classes=list(SHAPE_CLASSES))


def cache_views(model: OverFeat, reader: VOCDetection, limit: int | None = None) -> tuple[list[list[View]], list[dict]]:
    """Every view of every image (the expensive part), and the targets."""
    views, targets = [], []
    with torch.inference_mode():
        for i in range(len(reader) if limit is None else min(limit, len(reader))):
            image, target = reader[i]
            views.append(model.view_outputs(image))
            targets.append(target)
    return views, targets


def view_keys(model: OverFeat) -> list[tuple[int, bool]]:
    """``(scale, flipped)`` of each entry of ``model.view_outputs``, in its order."""
    flips = (False, True) if model.test_flip else (False,)
    return [(scale, flip) for scale in model.test_scales for flip in flips]


def score(
    model: OverFeat, views: list[list[View]], targets: list[dict], evaluator, *, keep: Sequence[tuple[int, bool]] | None = None
) -> dict[str, float]:
    """Merge the cached views (only the ``keep`` ones, default all) and evaluate."""
    keys = view_keys(model)
    chosen = [i for i, key in enumerate(keys) if keep is None or key in keep]
    evaluator.reset()
    with torch.inference_mode():
        for image_views, target in zip(views, targets):
            evaluator.update([model.merge_views([image_views[i] for i in chosen])], [target])
    return evaluator.compute()


def view_settings(model: OverFeat) -> dict[str, list[tuple[int, bool]]]:
    """One scale (the first, the window's) vs the configured scales, each without and (when
    configured) with flips: ``{setting: views kept}``."""
    one, every = model.test_scales[0], model.test_scales
    settings = {"one_scale": [(one, False)]}
    if model.test_flip:
        settings["one_scale_flips"] = [(one, False), (one, True)]
    if len(every) > 1:
        settings["multi_scale_merge"] = [(s, False) for s in every]
        if model.test_flip:
            settings["multi_scale_flips_merge"] = [(s, f) for s in every for f in (False, True)]
    return settings


def evaluator_for(model: OverFeat):
    classes = list(SHAPE_CLASSES)
    return ClsLocEvaluator(classes=classes) if model.mode == "localization" else VOCEvaluator(classes=classes)


def tune_grid(
    model: OverFeat, views: list[list[View]], targets: list[dict], grid: dict[str, Sequence[float]]
) -> tuple[dict[tuple, float], tuple]:
    """Score every combination of the model settings in ``grid`` (``{attribute: values}``, e.g.
    ``pre_merge_top_n``, ``merge_threshold``) on cached views -> ``({combination: metric}, best)``,
    combinations as tuples in the grid's order; the model's own settings are restored.

    The metric is the monitor of the mode (``cls_loc_accuracy`` or ``map_50``). ``top_k_classes``
    above the number of classes is skipped. Ties go to the combination nearest the model's own
    settings (the fewest grid steps away), so the choice is stable.
    """
    key = "cls_loc_accuracy" if model.mode == "localization" else "map_50"
    evaluator = evaluator_for(model)
    names = list(grid)
    saved = tuple(getattr(model, name) for name in names)
    results: dict[tuple, float] = {}
    try:
        for combination in itertools.product(*grid.values()):
            if dict(zip(names, combination)).get("top_k_classes", 1) > model.num_classes:
                continue
            for name, value in zip(names, combination):
                setattr(model, name, value)
            results[combination] = score(model, views, targets, evaluator)[key]
    finally:
        for name, value in zip(names, saved):
            setattr(model, name, value)

    def steps_from_config(combination: tuple) -> int:
        return sum(abs(_grid_index(v, values) - _grid_index(own, values)) for v, values, own in
                   zip(combination, grid.values(), saved))  # fmt: skip

    best = max(results, key=lambda c: (round(results[c], 6), -steps_from_config(c)))
    return results, best


def _grid_index(value: float, values: Sequence[float]) -> int:
    """The index in ``sorted(values)`` of the value nearest ``value``."""
    ordered = sorted(values)
    return min(range(len(ordered)), key=lambda i: abs(ordered[i] - value))


def tune_axes(model: OverFeat) -> dict[str, Sequence[float]]:
    """What ``tune`` chooses: in localization mode the classification rule picks the class, so
    ``top_k_classes`` cannot change a top-1 guess and the windows kept per view
    (``pre_merge_top_n``) are tuned instead; in detection mode ``top_k_classes``. Both with the
    merge threshold."""
    first = {"pre_merge_top_n": TUNE_TOP_NS} if model.mode == "localization" else {"top_k_classes": TUNE_KS}
    return {**first, "merge_threshold": TUNE_THRESHOLDS}


def tune(model: OverFeat, data: Path, *, split: str = "val", limit: int | None = None) -> dict:
    """``tune_axes(model)`` scored on ``split`` of the shapes root ``data``: ``{metric, split,
    grid: {merge_threshold: [...], "<setting>_<value>": [metric per threshold]}, <setting>,
    merge_threshold, value}``."""
    views, targets = cache_views(model, split_reader(data, split), limit)
    axes = tune_axes(model)
    results, best = tune_grid(model, views, targets, axes)
    setting = next(iter(axes))
    thresholds = sorted({t for _, t in results})
    table: dict[str, list] = {"merge_threshold": thresholds}  # a row per setting value (keys without dots)
    for value in sorted({v for v, _ in results}):
        table[f"{setting}_{value}"] = [round(results[(value, t)], 4) for t in thresholds]
    metric = "cls_loc_accuracy" if model.mode == "localization" else "map_50"
    return {"metric": metric, "split": split, "grid": table, setting: best[0], "merge_threshold": best[1],
            "value": round(results[best], 4)}  # fmt: skip


def _rounded(metrics: dict[str, float], keys: Sequence[str]) -> dict[str, float]:
    return {k: round(metrics[k], 4) for k in keys}


def window_head_metrics(model: torch.nn.Module, reader: VOCDetection) -> dict[str, float]:
    """A one-window head (the localization baseline) on every image of ``reader``."""
    evaluator = ClsLocEvaluator(classes=list(SHAPE_CLASSES))
    with torch.inference_mode():
        for i in range(len(reader)):
            image, target = reader[i]
            evaluator.update(model([image]), [target])
    return evaluator.compute()


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_overfeat_localization_") as tmp:
        work = Path(tmp)
        if quick:
            root = tiny_shapes(work / "shapes", single_object=True)
        else:
            root = single_object_shapes()
        reader = split_reader(root, "test")
        checkpoint, figures = train(CONFIG, root, work, minutes=MINUTES, quick=quick)
        model = load_detector(checkpoint).model.eval()
        if not isinstance(model, OverFeat):
            raise TypeError(f"{CONFIG}: not an OverFeat model ({type(model).__name__})")
        views, targets = cache_views(model, reader)
        evaluator = ClsLocEvaluator(classes=list(SHAPE_CLASSES))
        overfeat = {**figures, "test_scales": list(model.test_scales), "test": {
            setting: _rounded(score(model, views, targets, evaluator, keep=keep), METRICS)
            for setting, keep in view_settings(model).items()
        }}  # fmt: skip
        result = {"overfeat": overfeat, "tune": tune(model, root)}
        if not quick:  # the quick run trains once
            checkpoint, figures = train(BASELINE, root, work, minutes=MINUTES, quick=quick)
            baseline = load_detector(checkpoint).model.eval()
            result["localization_head"] = {**figures, "test": _rounded(window_head_metrics(baseline, reader), METRICS)}
    return result
