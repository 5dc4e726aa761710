# ddsp-device: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what is missing first: system packages (Debian / Raspberry Pi OS), a venv, the package.

PYTHON       ?= python3
VENV         ?= .venv
VENV_LITERT  ?= .venv-litert
VENV_TRAIN   ?= .venv-train
PIP_FLAGS    ?= --disable-pip-version-check --quiet
# Debian packages: libasound2-dev and a C compiler build pyalsaaudio; alsa-utils gives aplay -L.
APT_PACKAGES ?= libasound2-dev gcc alsa-utils
# systemd gives the tests systemd-analyze (verify, security) and systemd-sysusers; installing the
# package in a container starts nothing.
APT_PACKAGES += systemd
# fluidsynth and a General MIDI soundfont render the violin training data (ddsp-device train).
APT_PACKAGES += fluidsynth fluid-soundfont-gm

.PHONY: all demo test test-main test-litert test-train test-loaded violin bench deps system-deps clean help

all: help

help:
	@echo "make demo   - install what is missing, render the built-in phrase to demo.wav, play it if there is a sound card"
	@echo "make test   - install what is missing and run every test (under tflite-runtime, and the runtime tests under ai-edge-litert)"
	@echo "make bench  - measure the engine on this machine"
	@echo "make test-loaded RUNS=5 - make test RUNS times in a row with every core kept busy"
	@echo "make violin - rebuild the Violin model (data, training, export, evaluation; about an hour; VIOLIN_RUN=DIR trains afresh)"
	@echo "make clean  - remove the venvs and build output"
	@echo "sudo make install   - on the Pi: the service, its user, a venv in /opt/ddsp-device, models, config"
	@echo "sudo make uninstall - remove it again (keeps /etc/ddsp-device and /var/lib/ddsp-device unless PURGE=1)"

demo: deps
	$(VENV)/bin/ddsp-device demo --out demo.wav

test: test-main test-litert test-train

test-main: deps
	$(VENV)/bin/python -m pytest

# The runtime tests again under the other runtime (LiteRT, numpy 2), as Trixie will run them.
test-litert: $(VENV_LITERT)/.installed
	DDSP_DEVICE_RUNTIME=ai-edge-litert $(VENV_LITERT)/bin/python -m pytest -m runtime

# The model toolchain's tests (TensorFlow): the TF synthesiser against the runtime's, and a
# small fit -> export int8 -> load on both runtimes run. TensorFlow and tflite-runtime 2.14 cannot
# share a process, so in-process checks use LiteRT and 2.14 is checked through .venv.
test-train: deps $(VENV_LITERT)/.installed $(VENV_TRAIN)/.installed
	DDSP_DEVICE_RUNTIME=ai-edge-litert DDSP_DEVICE_TEST_PYTHONS=$(VENV)/bin/python:$(VENV_LITERT)/bin/python \
		$(VENV_TRAIN)/bin/python -m pytest tests/train

# The bundled Violin, rebuilt (about an hour on 2 cores; resumable; models/violin-run holds the
# finished run, so VIOLIN_RUN=build/violin-run trains from scratch): models/make_violin.sh.
violin: deps $(VENV_TRAIN)/.installed
	bash models/make_violin.sh

bench: deps
	$(VENV)/bin/ddsp-device bench

# make test RUNS times in a row with a CPU hog on every core (no test may depend on machine speed).
RUNS ?= 5
test-loaded:
	bash .ci/loaded $(RUNS)

deps: system-deps $(VENV)/.installed

# Installs the Debian packages that are missing (as root, or through sudo when available).
system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then echo "error: missing system packages:$$missing (no apt-get here; install them by hand)"; exit 1; fi; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "error: missing system packages:$$missing; run: sudo apt-get install$$missing"; exit 1; fi; \
	  echo "installing system packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[hw,test]'
	@touch $@

# Second environment: the same package on ai-edge-litert (no tflite-runtime, numpy 2).
$(VENV_LITERT)/.installed: pyproject.toml
	@test -x $(VENV_LITERT)/bin/python || $(PYTHON) -m venv $(VENV_LITERT)
	$(VENV_LITERT)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV_LITERT)/bin/pip install $(PIP_FLAGS) -e . --no-deps
	$(VENV_LITERT)/bin/pip install $(PIP_FLAGS) 'ai-edge-litert>=2.1' 'numpy>=1.26' 'pytest>=8' 'hypothesis>=6.100'
	@touch $@

# Third environment: the training toolchain (TensorFlow) beside the box's own runtime.
$(VENV_TRAIN)/.installed: pyproject.toml
	@test -x $(VENV_TRAIN)/bin/python || $(PYTHON) -m venv $(VENV_TRAIN)
	$(VENV_TRAIN)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV_TRAIN)/bin/pip install $(PIP_FLAGS) -e '.[train]'
	@touch $@

clean:
	rm -rf $(VENV) $(VENV_LITERT) $(VENV_TRAIN) build dist device/*.egg-info .pytest_cache demo.wav

# On the Pi: `sudo make install` / `sudo make uninstall` (systemd/install.sh; systemd/README.md).
# Options, as make or environment variables: NO_START=1 (enable, do not start), GOVERNOR=performance
# (CPU governor unit), PURGE=1 (uninstall also removes /etc/ddsp-device and /var/lib/ddsp-device);
# DESTDIR=DIR with SKIP_VENV=1 stages into DIR and touches nothing else (tests/test_install.py).
.PHONY: install uninstall
INSTALL_ENV = DESTDIR='$(DESTDIR)' SKIP_VENV='$(SKIP_VENV)' NO_START='$(NO_START)' \
	GOVERNOR='$(GOVERNOR)' PURGE='$(PURGE)' PYTHON='$(PYTHON)'

install:
	@$(INSTALL_ENV) bash systemd/install.sh install

uninstall:
	@$(INSTALL_ENV) bash systemd/install.sh uninstall
