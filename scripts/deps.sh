# Sourced by scripts/test-all and scripts/dev: installs what the build and the
# tests need on a fresh Debian machine (apt packages, cargo-nextest).
need_pkgs=()
# libclang-dev + clang: bindgen for RocksDB; iptables + iproute2: the jepsen suite's network partitions.
for pkg in libclang-dev clang iptables iproute2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "== installing system packages: ${need_pkgs[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

