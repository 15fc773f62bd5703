"""detseg's benchmarks: the slow checks that print figures, apart from the user commands.

Each benchmark is one module here with ``run(quick: bool) -> dict``: the figures of one run (plain
JSON values). ``quick=True`` runs it on tiny settings in seconds (the test suite does, so that no
benchmark rots); ``quick=False`` is the run whose figures the README quotes.

    python -m benchmarks list
    python -m benchmarks run NAME|all [--quick] [--out DIR]

A run writes ``<out>/<NAME>.json``: the figures with the git commit, the date, the machine and the
wall time (``benchmarks/record.py``). Full runs default to ``benchmarks/results/``, the checked-in
files the README's figures are tested against (``benchmarks/readme_figures.py``); quick runs
default to ``outputs/benchmarks/quick/``. Run full benchmarks on a quiet machine, one at a time.
"""

BENCHMARKS = (  # module names under benchmarks/, in the order ``run all`` takes them
    "demo",
    "data",
    "eval",
    "evaluate",
    "localization",
    "fcn",
    "yolo",
    "fast_yolo",
    "yolo_fc",
    "yolo_speed",
    "faster_rcnn_speed",
    "fast_vs_faster",
    "rcnn_speed",
    "overfeat_localization",
    "overfeat_detection",
    "overfeat_speed",
    "mnc",
    "mnc_coco",
    "pretrained",
    "lectures_table",
    "speed_story",
    "inference_speed",
    "predict_scale",
    "predict_processes",
    "fcn_pretrained",
    "photos_pretrained",
    "anchor_suggestion",
    "gpu",
)
