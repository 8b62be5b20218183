# `make test`: the README's test command (after `pip install torch==2.13.0 -e ".[dev]"`); .ci/run calls it.
.PHONY: test export readme
test:
	@echo "== notebooks and package agree"
	nbdev_export
	@git status --porcelain -- zimage_nb | grep . && { echo "zimage_nb/ differs from what nbs/ exports: edit the notebooks, run nbdev_export, commit both"; exit 1; } || true
	python tools/make_readme.py --check
	@echo "== pytest"
	python -m pytest tests/ -q -p no:cacheprovider
	@echo "== notebooks, top to bottom"
	nbdev_test --n_workers 2
export:
	nbdev_export
readme:
	python tools/make_readme.py
