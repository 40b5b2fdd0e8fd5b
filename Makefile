# Two commands: `make run` serves Docker Hub's default, `make test` installs and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# System packages the tests drive for real (a real upstream registry and a real client).
# Real upstream registry, real clients (skopeo, dockerd, containerd, podman), real Prometheus,
# a real terminal (tmux) for what `mirror warm` draws on one, Apache's htpasswd to write the
# pull users' bcrypt file as operators do, and mmdebstrap to make the Debian base the Dockerfile is
# built on (tests/test_container_image.py: no base image can be pulled), and nginx as the hashing
# balancer in front of several replicas (tests/real/test_s3_routing.py).
SYSTEM_PACKAGES := docker-registry skopeo docker.io containerd podman prometheus iproute2 tmux apache2-utils mmdebstrap nginx-light
SYSTEM_BINARIES := docker-registry skopeo dockerd containerd ctr podman prometheus promtool ip tmux htpasswd mmdebstrap nginx
# Only for `make test-ceph` (not in `make test`): the S3 suites against a one-node Ceph 16 with
# RGW (one monitor, one OSD, radosgw; tests/support/ceph.py) instead of SeaweedFS.
CEPH_PACKAGES := ceph-mon ceph-osd ceph-common radosgw
CEPH_BINARIES := monmaptool ceph-mon ceph-osd ceph radosgw-admin radosgw
S3_SUITES := tests/s3 tests/real/test_s3_backend.py tests/real/test_s3_routing.py

.PHONY: run test lint pytest system-deps ceph-deps test-ceph clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/mirror serve

# $(call install-missing,BINARIES,PACKAGES): as root, apt-get install PACKAGES if a binary is missing.
define install-missing
@missing=""; for b in $(1); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
if [ -n "$$missing" ]; then \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing"; \
		if [ -z "$$(ls /var/lib/apt/lists/*_Packages* 2>/dev/null)" ]; then apt-get update -q; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(2) || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(2); }; \
	else echo "missing$$missing (not root: tests that need them are skipped outside CI)"; fi; \
fi
endef

system-deps:
	$(call install-missing,$(SYSTEM_BINARIES),$(SYSTEM_PACKAGES))

ceph-deps:
	$(call install-missing,$(CEPH_BINARIES),$(CEPH_PACKAGES))

lint: $(VENV)/.installed
	$(BIN)/ruff check mirror tests bench
	$(BIN)/ruff format --check mirror tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	MYPYPATH=tests $(BIN)/mypy --strict tests/fakes tests/support tests/real tests/clients tests/auth tests/unit tests/s3 tests/*.py
	MYPYPATH=tests $(BIN)/mypy --strict bench

pytest: $(VENV)/.installed system-deps
	$(BIN)/pytest

test: lint pytest

# Optional and slower (some 2 minutes): the S3 suites against Ceph RGW instead of SeaweedFS.
test-ceph: $(VENV)/.installed system-deps ceph-deps
	MIRROR_TEST_S3=ceph $(BIN)/pytest $(S3_SUITES)

clean:
	rm -rf $(VENV) build *.egg-info
