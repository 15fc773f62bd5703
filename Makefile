# Setup is part of every target: a fresh clone needs only `make demo` or `make test`.
# torch/torchvision are installed first and pinned so that pip never resolves a
# different (multi-GB) build; everything else comes from setup.cfg.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.detseg-installed
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install demo test

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
# selective search (Fast R-CNN) needs cv2.ximgproc: the contrib build of the exact
# opencv-python-headless version albumentations installed, laid over it (both own cv2/),
# no deps, forced so that it is re-laid whenever this recipe runs again.
	$(PY) -m pip install -q --no-deps --force-reinstall "opencv-contrib-python-headless==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
	touch $@

install: $(STAMP)

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m pytest -q -n 2
