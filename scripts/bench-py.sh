#!/usr/bin/env bash
# Python benchmarks (docs/BENCHMARKS.md, "Python"): thread scaling of Archive reads, and
# DataLoader samples/s over 50k small samples from a hexz archive vs loose files vs one raw
# file + offsets (numpy.memmap) vs litdata, all in the same run.
# Also (issue 10/11) an image pipeline: 224 px JPEGs decoded and randomly cropped in 2
# DataLoader workers, hexz.torch.FileDataset over a tree archive vs torchvision ImageFolder.
# Usage: scripts/bench-py.sh [--samples N] [--runs R] [--dir DIR]   (DIR on a real disk;
# default /var/tmp/hexz-bench-py, about 8 GiB, reused between runs).
#        scripts/bench-py.sh --section threads [--reads N]   thread scaling alone (no torch)
#        scripts/bench-py.sh --section images [--images 5000] [--runs 3]   the image pipeline
# alone (about 100 MiB of JPEGs; needs the hexz CLI: $HEXZ_BIN, else built here).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HEXZ_VENV:-/var/cache/hexz/venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
need=()
mods="maturin numpy torch litdata torchvision PIL"
case " $* " in *" --section threads "*) mods="maturin numpy" ;; esac
for m in $mods; do
  "$PY" -c "import $m" 2>/dev/null || need+=("$([ $m = PIL ] && echo pillow || echo $m)")
done
[ ${#need[@]} -eq 0 ] || "$PY" -m pip install -q "${need[@]}"
if [ -z "${HEXZ_BIN:-}" ]; then
  cargo build --release --locked -q -p hexz-cli
  HEXZ_BIN="$PWD/target/release/hexz"
fi
export HEXZ_BIN=$(realpath "$HEXZ_BIN")
scripts/wheel.sh "$PY" >/dev/null
"$PY" -m pip install -q --force-reinstall --no-deps target/wheels/hexz-*.whl
cd /tmp  # import the installed package, not the source tree
exec "$PY" "$OLDPWD/scripts/bench_py.py" "$@"
