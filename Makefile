# `make test`: the README's test command (after `pip install torch==2.13.0 -e ".[dev]"`); .ci/run calls it.
.PHONY: test export readme browser-test
test:
	@echo "== notebooks and package agree"
	@rm -rf .export-check && cp -r zimage_nb .export-check
	nbdev_export
	@diff -r -x __pycache__ .export-check zimage_nb > /dev/null || { rm -rf .export-check; echo "zimage_nb/ differed from what nbs/ exports (now re-exported): edit the notebooks, not zimage_nb/, and commit both"; exit 1; }
	@rm -rf .export-check
	python tools/make_readme.py --check
	@echo "== pytest"
	python -m pytest tests/ -q -p no:cacheprovider
	@echo "== notebooks, top to bottom"
	nbdev_test --n_workers 2
export:
	nbdev_export
readme:
	python tools/make_readme.py

# The panels in a real browser (Voila + Debian's chromium + Playwright); not part of `make test`, which CI runs
# without a browser. Set up once: apt-get install chromium && pip install playwright voila ipykernel
browser-test:
	python -m pytest browser_tests -q -p no:cacheprovider
