# The two commands of the README: `make run` and `make test`. Each bootstraps .venv
# itself (Python 3.11+) and, when run as root on Debian/Ubuntu/Raspberry Pi OS,
# installs the Debian packages it needs when they are missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
APT_TEST_PACKAGES := chromium shellcheck systemd mosquitto mosquitto-clients
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-pi-versions pi-lane lint deps-test deps-run bench clean

run: $(VENV)/.run-installed
	$(VENV)/bin/engage-edge run --source demo $(ARGS)

# pytest-xdist: four workers, a test file per worker so a file's module fixtures (an
# appliance, a broker) start once. Four even on CI's two cores: much of the suite waits
# (on a browser, a broker, a subprocess), and two workers used 1.2 cores of 2 (measured
# 2026-11-28 on two cores: 7 min 33 s with two workers, 5 min 54 s with four).
# PYTEST_WORKERS=-n0 runs it in one process.
PYTEST_WORKERS ?= -n 4 --dist loadfile

test: $(VENV)/.test-installed deps-test lint
	$(PY) -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,@$(MAKE) --no-print-directory test-pi-versions)

# The vision and model tests once more under what a Raspberry Pi's install resolves
# (tests/pi-versions.txt: numpy 1.24, opencv 4.11, ai-edge-litert 1.4.0) on a Pi's Python
# (Pi OS bookworm: 3.11; numpy 1.24 has no wheel for a newer one), in a venv of their own:
# those older releases behave differently (1.4.0 crashed on a truncated model that 2.x
# refuses). Part of `make test` unless PYTEST_ARGS picks tests; about 50 s. Without a
# python3.11 it says so and does not run (CI, which has one, fails instead).
PI_VENV ?= .venv-pi
PI_PYTHON ?= python3.11
PI_TESTS := tests/test_classifier.py tests/test_blazeface.py tests/test_detector.py tests/test_align.py tests/test_flash.py \
	tests/test_vision_edges.py tests/test_tracker.py tests/test_e2e.py tests/test_web_upload.py tests/test_desk_scenes.py \
	tests/test_group_photos.py tests/test_uncertain.py tests/test_manifest_safety.py tests/test_camera.py

test-pi-versions:
	@if $(PI_PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory pi-lane; \
	elif [ -n "$$CI" ]; then \
		echo "error: the Pi-versions tests need $(PI_PYTHON), a Pi's Python (Pi OS bookworm): install Python 3.11"; exit 2; \
	else \
		echo "note: the Pi-versions tests did not run: no Python 3.11 as $(PI_PYTHON) here (a Pi's; numpy 1.24 has no wheel for newer ones). Install it, or name one: make test PI_PYTHON=/path/to/python3.11"; \
	fi

pi-lane: $(PI_VENV)/.installed
	@$(PI_VENV)/bin/python -c 'from importlib.metadata import version as v; print("as on a Pi:", *(f"{p} {v(p)}" for p in ("numpy", "opencv-python-headless", "ai-edge-litert")))'
	$(PI_VENV)/bin/python -m pytest -n 2 -q $(PI_TESTS)

$(PI_VENV)/.installed: setup.py tests/pi-versions.txt
	rm -rf $(PI_VENV)
	$(PI_PYTHON) -m venv $(PI_VENV)
	$(PI_VENV)/bin/pip install -q --upgrade pip
	$(PI_VENV)/bin/pip install -q -c tests/pi-versions.txt -e . pytest pytest-timeout pytest-xdist requests hypothesis scikit-image
	touch $@

# The linter and the type checker, configured in ruff.toml and mypy.ini; both must be clean.
lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(VENV)/.run-installed
	$(VENV)/bin/engage-edge bench $(ARGS)

# Debian's python3 has venv in its stdlib; python3-venv adds ensurepip, which venv runs: without it
# `-m venv --help` passes and `-m venv` fails, so ensurepip is what is looked for.
$(VENV)/.venv-created:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "engage-edge needs Python 3.11 or newer"' || \
		{ echo "error: $(PYTHON) is older than 3.11; install python3.11+ (apt install python3 python3-venv)"; exit 2; }
	@$(PYTHON) -c 'import ensurepip' >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq python3-venv; } || \
		{ echo "error: $(PYTHON) has no ensurepip, which creating .venv needs: sudo apt-get install python3-venv (or run make as root)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	touch $@

$(VENV)/.run-installed: $(VENV)/.venv-created setup.py
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.venv-created setup.py
	$(PIP) install -q -e '.[dev,train]'
	touch $@ $(VENV)/.run-installed

# Debian packages for the browser, shell and unit-file tests, installed only when missing.
deps-test:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v shellcheck >/dev/null 2>&1 || missing="$$missing shellcheck"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing="$$missing mosquitto"; \
	command -v mosquitto_pub >/dev/null 2>&1 || missing="$$missing mosquitto-clients"; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "missing:$$missing - install them (sudo apt-get install$$missing) or run make test as root"; exit 2; \
		fi; \
	fi

clean:
	rm -rf $(VENV) $(PI_VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info test-artifacts
