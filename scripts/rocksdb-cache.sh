# Sourced by the build scripts. RocksDB's C++ build takes 10-20 minutes on
# two cores; once built, its static library is kept in a cache folder keyed
# by the librocksdb-sys version, and later builds link it instead
# (ROCKSDB_LIB_DIR + ROCKSDB_STATIC, which librocksdb-sys supports).
rocksdb_version=$(awk '/^name = "librocksdb-sys"/{getline; gsub(/[" ]/,"",$0); sub(/version=/,"",$0); print; exit}' Cargo.lock)
ROCKSDB_CACHE_DIR="${ROCKSDB_CACHE_DIR:-/var/tmp/tally-rocksdb-cache}/${rocksdb_version:-unknown}"
if [ -f "$ROCKSDB_CACHE_DIR/librocksdb.a" ]; then
  echo "== using cached RocksDB $rocksdb_version from $ROCKSDB_CACHE_DIR"
  export ROCKSDB_LIB_DIR="$ROCKSDB_CACHE_DIR" ROCKSDB_STATIC=1
fi
rocksdb_cache_save() {
  [ -n "${ROCKSDB_LIB_DIR:-}" ] && return 0
  local built
  built=$(ls -t "$CARGO_TARGET_DIR"/*/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1 || true)
  if [ -n "$built" ]; then
    mkdir -p "$ROCKSDB_CACHE_DIR" && cp "$built" "$ROCKSDB_CACHE_DIR/librocksdb.a.tmp" \
      && mv "$ROCKSDB_CACHE_DIR/librocksdb.a.tmp" "$ROCKSDB_CACHE_DIR/librocksdb.a" \
      && echo "== cached RocksDB static library in $ROCKSDB_CACHE_DIR"
  fi
}
