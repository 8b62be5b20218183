# `make test`: the README's test command (after `pip install torch==2.13.0 -e ".[dev]"`); .ci/run calls it.
.PHONY: test export readme docs browser-test floors release-check gpu-rehearsal panels-ipywidgets7
test:
	@echo "== $$(date -u +%T) notebooks and package agree"
	@rm -rf .export-check && cp -r zimage_nb .export-check
	nbdev_export
	@diff -r -x __pycache__ .export-check zimage_nb > /dev/null || { rm -rf .export-check; echo "zimage_nb/ differed from what nbs/ exports (now re-exported): edit the notebooks, not zimage_nb/, and commit both"; exit 1; }
	@rm -rf .export-check
	python tools/make_readme.py --check
	@echo "== $$(date -u +%T) lint (ruff: pyproject.toml)"
	ruff check zimage_nb tests tools bench browser_tests
	@echo "== $$(date -u +%T) pytest (two workers, a test file each at a time: tests/conftest.py gives each one thread)"
	python -m pytest tests/ -q -p no:cacheprovider --durations=15 -n 2 --dist loadfile
	@echo "== $$(date -u +%T) notebooks, top to bottom (two at a time, one thread each)"
	OMP_NUM_THREADS=1 nbdev_test --n_workers 2
	@$(MAKE) --no-print-directory release-check floors

# The sdist and the wheel build and pass `twine check --strict` (what PyPI would refuse, refused here).
release-check:
	@echo "== $$(date -u +%T) release: sdist + wheel, twine check --strict"
	@rm -rf .dist-check
	python -m build --outdir .dist-check > .dist-check.log 2>&1 || { cat .dist-check.log; exit 1; }
	twine check --strict .dist-check/*
	@rm -rf .dist-check .dist-check.log

# The dependency floors (constraints/floors.txt = settings.ini's >= versions) install together in a fresh environment
# and pass the offline demo and the fast tests.
floors:
	@echo "== $$(date -u +%T) dependency floors: fresh environment, demo + fast tests"
	python tools/check_floors.py
export:
	nbdev_export
readme:
	python tools/make_readme.py

# The docs site in _docs/ (one page per notebook, with its saved outputs; open _docs/index.html). The browser test builds and opens it.
docs:
	python tools/make_docs.py

# The panels in a real browser (Voila + Debian's chromium + Playwright). Not part of `make test` (it needs a system
# package); .ci/run installs chromium and runs it after `make test`. Set up once: apt-get install chromium && pip install -e ".[browser]"
browser-test:
	python -m pytest browser_tests -q -p no:cacheprovider

# The GPU first look (bench/gpu_first_look.sh, the one command a lent GPU runs first) rehearsed on the CPU: wheels from the
# same pack script, a throwaway environment with only what the GPU machine has, the tree as the device tool sends it, every
# row at tiny scale, then checked. About 2 minutes; needs PyPI. .ci/run runs it after `make test`.
gpu-rehearsal:
	bash .ci/gpu_rehearsal.sh

# The panels with the ipywidgets Colab imports at start (7.7.1; the rest of the tests run with 8): a virtual environment on
# top of this one (its packages through a .pth file, so it works from inside CI's own environment) that only swaps ipywidgets. About 30 s; needs PyPI. .ci/run runs it after `make test`.
panels-ipywidgets7:
	@rm -rf .venv-ipywidgets7 && python -m venv .venv-ipywidgets7
	python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > "$$(.venv-ipywidgets7/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/outer.pth"
	.venv-ipywidgets7/bin/python -m pip install -q "ipywidgets==7.7.1" 2>&1 | grep -v "^WARNING: Location" || true
	.venv-ipywidgets7/bin/python -c "import ipywidgets as W; assert W.__version__ == '7.7.1', W.__version__"
	.venv-ipywidgets7/bin/python -m pytest tests/test_panels.py -q -p no:cacheprovider -W ignore::DeprecationWarning
	@rm -rf .venv-ipywidgets7
