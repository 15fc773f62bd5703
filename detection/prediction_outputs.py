"""The summary files of a batch-inference run, rebuilt from its journals (``detection/journal.py``).

``predictions.json``, ``images.json``, ``predictions.csv`` and ``errors.txt`` (formats in
``detection/inference.py``) list the finished images in image-id order, whichever process
predicted them and in whatever order: the files of a run on N processes are those of one process.
They are streamed, one journal line at a time, each into a temporary file renamed over the old
one, so memory does not grow with the detections and a file is always a whole version
(``images.json`` holds one image a line).
"""

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets.boxes import xyxy_to_xywh
from detection.drawing import atomic_file, class_name
from detection.evaluation.results_io import label_mapper
from detection.journal import JournalIndex

PREDICTIONS_JSON = "predictions.json"
IMAGES_JSON = "images.json"
PREDICTIONS_CSV = "predictions.csv"
ERRORS_TXT = "errors.txt"
CSV_HEADER = ["path", "image_id", "label", "score", "x1", "y1", "x2", "y2"]


@dataclass(frozen=True)
class OutputCounts:
    images: int  # predicted images listed
    detections: int
    errors: int  # unreadable files listed


def write_outputs(
    index: JournalIndex,
    image_ids: Mapping[str, int],
    classes: Sequence[str],
    out_dir: Path,
    *,
    label_to_category_id: Mapping[int, int] | None = None,
) -> OutputCounts:
    """Rebuild the summary files from the journal lines ``index`` lists.

    ``image_ids`` maps each input's relative path to its image id; journalled files no longer in
    the input are left out.
    """
    to_category = label_mapper(label_to_category_id)
    finished = sorted((rel for rel in index.lines if rel in image_ids), key=lambda rel: (image_ids[rel], rel))
    images = detections = errors = 0
    with (
        index.reader() as journal,
        atomic_file(out_dir / PREDICTIONS_JSON) as results,
        atomic_file(out_dir / IMAGES_JSON) as image_list,
        atomic_file(out_dir / PREDICTIONS_CSV) as csv_file,
        atomic_file(out_dir / ERRORS_TXT) as error_list,
    ):
        rows = io.TextIOWrapper(csv_file, encoding="utf-8", newline="")
        table = csv.writer(rows)
        table.writerow(CSV_HEADER)
        results.write(b"[")
        image_list.write(b'{"images": [')
        for rel in finished:
            entry, image_id = journal.entry(rel), image_ids[rel]
            if "error" in entry:
                error_list.write(f"{rel}\t{entry['error']}\n".encode())
                errors += 1
                continue
            image = {"id": image_id, "file_name": rel, "width": entry["width"], "height": entry["height"]}
            image_list.write((",\n" if images else "\n").encode() + json.dumps(image).encode())
            images += 1
            dets = entry.get("detections", [])
            if not dets:
                continue
            image_results = []  # one json.dumps and one writerows per image: the summaries cost little beside the model
            for det, bbox in zip(dets, xyxy_to_xywh([det["box"] for det in dets]).tolist(), strict=True):
                result = {"image_id": image_id, "category_id": to_category(det["label"]), "bbox": bbox, "score": det["score"]}
                if "segmentation" in det:
                    result["segmentation"] = det["segmentation"]
                image_results.append(result)
            results.write((", " if detections else "").encode() + json.dumps(image_results)[1:-1].encode())
            table.writerows(
                [rel, image_id, class_name(det["label"], classes), f"{det['score']:.6f}", *(f"{v:.2f}" for v in det["box"])] for det in dets
            )
            detections += len(dets)
        results.write(b"]")
        categories = [{"id": to_category(i + 1), "name": name} for i, name in enumerate(classes)]
        image_list.write(f'\n], "categories": {json.dumps(categories)}}}\n'.encode())
        rows.flush()
        rows.detach()  # the atomic file closes the underlying file
    return OutputCounts(images=images, detections=detections, errors=errors)
