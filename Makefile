# scanwatch: every target is idempotent.
#   make setup            install what is missing (root), create .venv
#   make run ARGS=...     setup, then `scanwatch run ARGS` in the foreground
#   make test ARGS=...    setup, then every test (unit first, then system)
#   make unit ARGS=...    unit tests only; no root, needs an existing .venv
#   make clean            remove .venv and build/test caches
#   make install          (root) system-wide: /opt/scanwatch, /usr/local/bin/scanwatch,
#                         /etc/scanwatch, the scanwatch group, scanwatch.service (started
#                         when systemd runs; START=no only enables it)
#   make e2e              (root) README's commands on a freshly built Debian 12 booted with
#                         systemd-nspawn, attacked from a scanner namespace (tests/e2e/run.py)
#   make deb              scanwatch_<version>_all.deb (scripts/mkdeb.sh; Debian's python3-*
#                         packages instead of a venv), then lintian on it (errors fail)
#   make uninstall        (root) remove all of it, every block and the hosts.deny lines
#                         scanwatch wrote; a config file you changed is kept

VENV   := .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: all setup run test unit clean install uninstall e2e deb

all: test

setup:
	bash scripts/setup.sh

run: setup
	$(VENV)/bin/scanwatch run $(ARGS)

test: setup
	$(PY) -m pytest -q tests $(ARGS)

unit:
	@test -x $(PY) || { echo "make unit: no $(VENV) yet; run 'make setup' (as root) once first" >&2; exit 1; }
	$(PY) -m pytest -q tests/unit $(ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache *.egg-info scanwatch_*_all.deb
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

install:
	START=$(or $(START),yes) bash scripts/install.sh install

uninstall:
	bash scripts/install.sh uninstall

e2e: setup
	/usr/bin/python3 tests/e2e/run.py $(ARGS)

deb: setup
	bash scripts/mkdeb.sh
	@if command -v lintian >/dev/null; then lintian --fail-on error scanwatch_*_all.deb; \
	 else echo "make deb: lintian is not installed (apt-get install lintian)" >&2; fi
