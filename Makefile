# Two commands on a fresh Debian/Ubuntu machine with python3 and make:
#   make demo   installs everything and runs the main job on the sample documents
#   make test   installs everything and runs the linters and the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SYSTEM_PACKAGES := tesseract-ocr tesseract-ocr-eng libreoffice-writer-nogui redis-server

.PHONY: demo test lint system-deps samples bench clean

$(BIN)/legaldoc: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "legaldoc needs Python >= 3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV) || { echo "install venv support: sudo apt-get install python3-venv"; exit 2; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

system-deps:
	@missing=""; \
	command -v tesseract >/dev/null || missing="$$missing tesseract-ocr tesseract-ocr-eng"; \
	command -v soffice >/dev/null || missing="$$missing libreoffice-writer-nogui"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "legaldoc needs system packages; run:  sudo apt-get install -y --no-install-recommends$$missing"; exit 2; \
	  fi; \
	fi

demo: system-deps $(BIN)/legaldoc
	$(BIN)/legaldoc run manifests/sample.yaml
	$(BIN)/legaldoc entities --project sample --limit 40

lint: $(BIN)/legaldoc
	$(BIN)/ruff check legaldoc tests benchmarks scripts
	$(BIN)/lint-imports
	$(BIN)/mypy

test: system-deps $(BIN)/legaldoc lint
	$(BIN)/pytest -n 2

samples: $(BIN)/legaldoc
	$(BIN)/python scripts/make_samples.py

bench: system-deps $(BIN)/legaldoc
	$(BIN)/python benchmarks/extract.py

clean:
	rm -rf $(VENV) .legaldoc .pytest_cache .ruff_cache
