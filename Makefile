# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export MPLBACKEND ?= Agg

.PHONY: install demo test test-slow test-gpu export check-sync readme bench docs docs-test

# torch first (the pinned wheels), then the package with its dev tools, pinned by constraints.txt
$(STAMP): settings.ini setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch torchvision
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/fashion_style_demo

# fails when notebooks and fashion_style/ are out of step, a notebook is not clean, or a test fails
test: install check-sync
	@set -o pipefail; n=$$(find nbs -name '*.ipynb' -not -name '_*' -not -path '*/.ipynb_checkpoints/*' | while read -r f; do [ -e "$$(dirname "$$f")/.notest" ] || echo "$$f"; done | wc -l); \
	 if OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing 2>&1 | tee .nbdev_test.log; then echo "nbdev_test: $$n passed, 0 failed"; \
	 else f=$$(grep -c '^==>' .nbdev_test.log); echo "nbdev_test: $$((n-f)) passed, $$f failed"; exit 1; fi
	$(BIN)/python tools/fill_outputs.py --self-test
	@$(MAKE) --no-print-directory docs-test

# the slow cells too, with the optional Ray engine installed (pinned like the rest)
test-slow: install
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ray]'
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --flags slow --timing

# the GPU cells too (`#| cuda`), on a machine with a CUDA GPU
test-gpu: install
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --flags cuda --timing

check-sync: install
	@before=$$(find fashion_style -name '*.py' -print0 | sort -z | xargs -0 sha1sum | sha1sum); \
	 nbs_before=$$(find nbs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha1sum | sha1sum); \
	 PATH=$(BIN):$$PATH nbdev_export && PATH=$(BIN):$$PATH nbdev_clean || exit 1; \
	 after=$$(find fashion_style -name '*.py' -print0 | sort -z | xargs -0 sha1sum | sha1sum); \
	 nbs_after=$$(find nbs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha1sum | sha1sum); \
	 if [ "$$before" != "$$after" ]; then echo "FAIL: nbdev_export changed fashion_style/: notebooks and package were out of step"; git status --short fashion_style; exit 1; fi; \
	 if [ "$$nbs_before" != "$$nbs_after" ]; then echo "FAIL: nbdev_clean changed notebooks: they were not clean"; git status --short nbs; exit 1; fi; \
	 echo "notebooks, package and cleanliness in step"
	$(BIN)/python tools/make_readme.py --check

export: install
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean

readme: install
	$(BIN)/python tools/make_readme.py

bench: install
	$(BIN)/python bench/threshold_bench.py
	$(BIN)/python bench/host_sync_bench.py
	$(BIN)/python bench/checkpoint_bench.py

# the docs site, previewed without Quarto: nbdev's processing (show_doc cells re-run) into _proc/, then every page
# through nbconvert into _docs_preview/ (tools/docs_preview.py). The real site: nbdev_docs in .github/workflows/deploy.yaml
docs: install
	$(BIN)/python tools/docs_preview.py

# every page of the preview opened in headless Chromium: title, no error output, images load, internal links
# resolve; screenshot _docs_preview/home.png. The checker first checks itself on fake broken pages.
docs-test: docs
	@$(BIN)/python tools/docs_test.py --find-browser >/dev/null || { echo "installing chromium (apt-get)"; \
	 SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update && \
	 { $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver || \
	   $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium-browser chromium-chromedriver; }; }
	$(BIN)/python tools/docs_test.py --self-test
	$(BIN)/python tools/docs_test.py
