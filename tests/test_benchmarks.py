"""benchmarks/: every benchmark's quick run, its JSON record, and the README's figures against the results files."""

import json
from pathlib import Path

import pytest
import yaml

from benchmarks import BENCHMARKS
from benchmarks.__main__ import main, run_one
from benchmarks.readme_figures import check, cited_figures, pages
from benchmarks.runs import SHAPES_SINGLE, SHAPES_SINGLE_SIZES

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_quick_run_writes_its_record(name, tmp_path):
    path = run_one(name, quick=True, out=tmp_path)
    result = json.loads(path.read_text())
    assert path == tmp_path / f"{name}.json"
    assert result["benchmark"] == name and result["quick"] is True
    assert result["figures"], f"{name} returned no figures"
    assert set(result["machine"]) >= {"cpus", "torch_threads", "device"}
    assert result["commit"] and result["date"] and result["wall_s"] >= 0


def test_list_names_every_benchmark(capsys):
    assert main(["list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(BENCHMARKS)


@pytest.mark.parametrize("page", pages(REPO), ids=lambda p: p.relative_to(REPO).as_posix())
def test_figures_agree_with_their_results_files(page):
    assert check(page, REPO) == []


def test_the_readme_and_the_results_page_cite_their_figures():
    assert len(cited_figures((REPO / "README.md").read_text())) >= 8, "the README's heads table cites a figure per head"
    assert len(cited_figures((REPO / "docs" / "results.md").read_text())) >= 100


def test_a_page_in_docs_links_up_to_the_results(tmp_path):
    _results(tmp_path, {"s": 1.0})
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "x.md"
    page.write_text("[1.0](../benchmarks/results/x.json#s)")
    assert check(page, tmp_path) == []
    page.write_text("[1.0](benchmarks/results/x.json#s)")
    assert "does not open from x.md" in check(page, tmp_path)[0]


def _results(tmp_path: Path, figures: dict, *, quick: bool = False) -> None:
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "x.json").write_text(json.dumps({"quick": quick, "figures": figures}))


def test_check_reports_a_figure_that_differs_or_has_no_source(tmp_path):
    _results(tmp_path, {"a": {"map_50": 0.8874}, "s": 142.3})
    readme = tmp_path / "README.md"
    readme.write_text("ok [0.887](benchmarks/results/x.json#a.map_50), [142](benchmarks/results/x.json#s) s\n")
    assert check(readme, tmp_path) == []
    readme.write_text("[0.889](benchmarks/results/x.json#a.map_50) [1](benchmarks/results/x.json#a.nope) "
                      "[2](benchmarks/results/missing.json#s)")  # fmt: skip
    problems = check(readme, tmp_path)
    assert len(problems) == 3
    assert "records 0.8874" in problems[0] and "no figure a.nope" in problems[1] and "does not exist" in problems[2]


def test_check_reads_a_percent_encoded_key(tmp_path):
    _results(tmp_path, {"Fast R-CNN": {"value": 0.9}})
    readme = tmp_path / "README.md"
    readme.write_text("[0.90](benchmarks/results/x.json#Fast%20R-CNN.value)")
    assert check(readme, tmp_path) == []
    readme.write_text("[0.90](benchmarks/results/x.json#Fast%20R-CNN.valu)")
    assert "no figure Fast%20R-CNN.valu" in check(readme, tmp_path)[0]


def test_check_refuses_a_quick_run_as_a_source(tmp_path):
    _results(tmp_path, {"s": 1.0}, quick=True)
    readme = tmp_path / "README.md"
    readme.write_text("[1.0](benchmarks/results/x.json#s)")
    assert "quick run" in check(readme, tmp_path)[0]


@pytest.mark.parametrize("config", ["configs/localization/shapes.yaml", "configs/overfeat/shapes.yaml"])
def test_single_object_configs_train_on_the_benchmarks_data(config):
    """The localization configs' figures come from ``SHAPES_SINGLE``: the configs must name it."""
    data = yaml.safe_load((REPO / config).read_text())["data"]["init_args"]
    assert REPO / data["root"] == SHAPES_SINGLE and data["shapes_sizes"] == SHAPES_SINGLE_SIZES
