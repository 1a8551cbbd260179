# runimage: build the RunDir and the single file, run it, test it.
#
#   make          build ./runimage (and build/RunDir, the same container unpacked)
#   make run      build, then start a shell in the container
#   make test     build, then run the tests as an unprivileged user
#
# Build dependencies are installed with apt-get when make runs as root; otherwise `make deps`
# says which packages are missing.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

BUILD := build
RUNDIR := $(BUILD)/RunDir
IMAGE := runimage
VENV := $(BUILD)/venv
PYTHON_HOST ?= /usr/bin/python3

DEB_BUILD_DEPS := mmdebstrap bubblewrap squashfs-tools squashfuse fuse3 uidmap busybox-static \
	libsquashfuse-dev libfuse3-dev libzstd-dev liblz4-dev liblzma-dev liblzo2-dev zlib1g-dev \
	musl-tools gcc make python3 python3-venv python3-pyelftools
DEB_TEST_DEPS := python3-pytest python3-click python3-psutil python3-pyroute2 python3-xlib \
	python3-pyelftools util-linux procps tmux


.PHONY: all rundir busybox deps test-deps run test lint clean

all: $(IMAGE)

deps:
	@missing=$$(for p in $(DEB_BUILD_DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "Installing build dependencies: $$missing"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
		else \
			echo "Missing build dependencies: $$missing (as root: apt-get install $$missing)" >&2; \
			exit 1; \
		fi; \
	fi

test-deps: deps
	@missing=$$(for p in $(DEB_TEST_DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# The parts of the RunDir: each script skips its work when its inputs did not change.
rundir: deps
	rootfs-build/build.sh $(RUNDIR)/rootfs
	static-bins/build.sh $(RUNDIR)/static
	$(MAKE) -C runtime OUT=$(abspath $(BUILD)/runtime)
	cp --preserve=timestamps $(BUILD)/runtime/runtime $(RUNDIR)/static/runtime
	rm -rf $(RUNDIR)/static/launcher/runimage
	mkdir -p $(RUNDIR)/static/launcher $(RUNDIR)/config
	cp -r --preserve=timestamps src/runimage $(RUNDIR)/static/launcher/runimage
	rm -rf $(RUNDIR)/static/launcher/runimage/__pycache__
	cp --preserve=timestamps src/runimage/entry.py $(RUNDIR)/static/launcher/run.py
	$(PYTHON_HOST) -m compileall -q $(RUNDIR)/static/launcher/runimage
	$(MAKE) --no-print-directory $(RUNDIR)/Run
	cp --preserve=timestamps static-bins/prefetch.list $(RUNDIR)/.prefetch
	cp --preserve=timestamps config/*.rcfg $(RUNDIR)/config/ 2>/dev/null || true

# The RunDir's entry point: a static program, so it needs nothing of the host.
$(RUNDIR)/Run: static-bins/run-entry.c
	musl-gcc -static -Os -Wall -Wextra -Werror -o $@.tmp $<
	strip $@.tmp
	mv $@.tmp $@

# Packing needs no container, so root may do it. The image is packed again only when the
# RunDir's content changed (rootfs/.build, which each build stamps, left out).
RUNDIR_HASH = cd $(RUNDIR) && { \
	find . -path ./rootfs/.build -prune -o -printf '%p %y %m %l\n' | LC_ALL=C sort; \
	find . -path ./rootfs/.build -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 cat; \
	} | sha256sum | cut -d' ' -f1

$(IMAGE): rundir
	@hash=$$($(RUNDIR_HASH)); \
	if [ -f $(IMAGE) ] && [ "$$(cat $(BUILD)/image.inputs-hash 2>/dev/null)" = "$$hash" ]; then \
		echo "$(IMAGE) up to date"; \
	else \
		ALLOW_ROOT=1 $(RUNDIR)/Run --run-build $(abspath $(IMAGE)) && \
		echo "$$hash" > $(BUILD)/image.inputs-hash; \
	fi

run: all
	@if [ "$$(id -u)" = 0 ]; then \
		echo "make run: running as root, so ALLOW_ROOT=1 is set for this shell"; \
		export ALLOW_ROOT=1; \
	fi; \
	./$(IMAGE) --run-shell

$(VENV)/bin/ruff:
	$(PYTHON_HOST) -m venv $(VENV)
	$(VENV)/bin/pip install -q ruff mypy types-psutil click psutil pyelftools pytest

lint: $(VENV)/bin/ruff
	$(VENV)/bin/ruff check src static-bins tests bench
	$(VENV)/bin/ruff format --check src static-bins tests bench
	$(VENV)/bin/mypy

# A tiny busybox rootfs for the fast tests.
busybox:
	rootfs-build/build-busybox.sh $(BUILD)/busybox-rootfs

test: test-deps all busybox lint
	tests/run.sh

clean:
	rm -rf $(BUILD) $(IMAGE)
