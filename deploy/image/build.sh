#!/usr/bin/env bash
# Builds the Tally container image FROM scratch: tallyd and tallyctl in
# /usr/local/bin plus exactly the shared libraries `ldd` lists for them,
# copied under the paths ldd prints (the dynamic loader included), and an
# empty /var/lib/tally owned by uid 10001. Uses the plain `docker build`
# (the legacy builder: DOCKER_BUILDKIT=0, no buildx) and pulls nothing.
#
# Usage: deploy/image/build.sh [--profile release|debug] [--target-dir DIR]
#                              [--bin-dir DIR] [--tag NAME:TAG] [--build]
#   --profile     cargo profile whose binaries go in (default release)
#   --target-dir  cargo target dir (default $CARGO_TARGET_DIR, else /var/tmp/tally-target)
#   --bin-dir     take tallyd and tallyctl from DIR instead of TARGET_DIR/PROFILE
#   --tag         image name (default tally:<version>, the workspace version;
#                 tally:<version>-debug for --profile debug)
#   --build       run `cargo build --locked -p tally-node -p tallyctl` first
# Prints the image name on its last line.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"

profile=release
target_dir="${CARGO_TARGET_DIR:-/var/tmp/tally-target}"
bin_dir=""
tag=""
build=0
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
    --target-dir) target_dir="${2:?--target-dir needs a value}"; shift 2 ;;
    --bin-dir) bin_dir="${2:?--bin-dir needs a value}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    --build) build=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release|debug) ;;
  *) echo "build.sh: --profile must be release or debug" >&2; exit 2 ;;
esac

for tool in docker ldd; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found" >&2; exit 1; }
done

if [ "$build" = 1 ]; then
  flags=(--locked -p tally-node -p tallyctl)
  [ "$profile" = release ] && flags+=(--release)
  (cd "$repo" && CARGO_TARGET_DIR="$target_dir" cargo build "${flags[@]}")
fi
[ -n "$bin_dir" ] || bin_dir="$target_dir/$profile"
for bin in tallyd tallyctl; do
  if [ ! -x "$bin_dir/$bin" ]; then
    hint="cargo build -p tally-node -p tallyctl"
    [ "$profile" = release ] && hint="cargo build --release -p tally-node -p tallyctl"
    echo "build.sh: $bin_dir/$bin not found: build it first ($hint) or pass --build" >&2
    exit 1
  fi
done

version=$(awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version/{print $2; exit}' "$repo/Cargo.toml")
revision=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -z "$tag" ]; then
  tag="tally:${version}"
  [ "$profile" = debug ] && tag="${tag}-debug"
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/tally-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/data"

# Copies FILE to rootfs under the same path (symlinks resolved: the loader
# finds each library under the name ldd printed).
copy_into_rootfs() {
  local src="$1" dst="$ctx/rootfs$1"
  [ -e "$dst" ] && return 0
  mkdir -p "$(dirname "$dst")"
  cp -L "$src" "$dst"
  echo "  $src"
}

echo "== image $tag: binaries from $bin_dir"
for bin in tallyd tallyctl; do
  cp "$bin_dir/$bin" "$ctx/rootfs/usr/local/bin/$bin"
  out=$(ldd "$bin_dir/$bin" 2>&1) || {
    # A static binary needs no libraries; anything else is an error.
    if grep -q "not a dynamic executable" <<<"$out"; then continue; fi
    echo "build.sh: ldd $bin failed: $out" >&2; exit 1
  }
  if grep -q "not found" <<<"$out"; then
    echo "build.sh: $bin has missing libraries:" >&2
    grep "not found" <<<"$out" >&2
    exit 1
  fi
  echo "== shared libraries of $bin (ldd):"
  # Lines: "libx.so.N => /path/libx.so.N (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)",
  # "linux-vdso.so.1 (0x...)" (in the kernel: no file).
  while read -r path; do
    copy_into_rootfs "$path"
  done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$out")
done

echo "== docker build -t $tag (legacy builder, FROM scratch)"
DOCKER_BUILDKIT=0 docker build --quiet \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -f "$repo/deploy/image/Dockerfile" -t "$tag" "$ctx" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "== built $tag ($((size / 1024 / 1024)) MiB)"
echo "$tag"
