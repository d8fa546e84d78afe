#!/usr/bin/env bash
# Thin-snapshot benchmark: how many bytes does version 2 cost when version 1 is already stored?
#
# Compares hexz thin children (`hexz pack --base v1.hxz`, fixed 64 KiB blocks and --cdc, zstd-3
# and LZ4) with a compressed qcow2 overlay holding only the clusters that differ from v1.qcow2,
# and with the new chunks casync adds to a chunk store that already holds v1. Data:
#   * ext4 image (IMG_MB, default 512 MiB, 4 KiB blocks) with ~DATA_MB (400) MB of system files
#     (/usr/include, /usr/share/doc, part of /usr/lib); v2 = files removed, edited in place,
#     appended to and added, made two ways:
#       - "rebuilt":  mkfs.ext4 -d again from the modified tree (files are laid out afresh);
#       - "in place": the same changes applied with debugfs -w to a copy of v1.img (unchanged
#         files stay where they were: the same disk, later);
#   * a tar of /usr/include, and the same tar with a small file inserted first (every byte after
#     it shifts by a non-multiple of the block size).
# Also measures pack throughput: CDC vs fixed chunking (--compression none), dedup on vs off.
#
# Prints markdown on stdout and saves it to bench-data/thin-results.md. Idempotent; installs
# missing tools with apt-get; builds hexz (release) unless HEXZ=/path/to/hexz is given.
# Scratch space: bench-data/thin/ (large files removed at the end unless KEEP=1).
# Usage: scripts/bench-thin.sh            (about 5-10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C
W=$ROOT/bench-data/thin
RES=$ROOT/bench-data/thin-results.md
IMG_MB=${IMG_MB:-512}
DATA_MB=${DATA_MB:-400}
RUNS=${RUNS:-5}
UUID=5e1f0000-7b1d-4c0e-9a55-000000000001
export E2FSPROGS_FAKE_TIME=1700000000
log() { echo "bench-thin: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- tools --------------------------------------------------------------------------------
need=()
for w in qemu-img:qemu-utils casync:casync mkfs.ext4:e2fsprogs debugfs:e2fsprogs \
  e2fsck:e2fsprogs hyperfine:hyperfine; do
  have "${w%%:*}" || need+=("${w##*:}")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  mapfile -t pkgs < <(printf '%s\n' "${need[@]}" | sort -u)
  mapfile -t must < <(printf '%s\n' "${pkgs[@]}" | grep -v '^hyperfine$' || true)
  # hyperfine is optional (timed by hand without it); the others are not.
  $SUDO apt-get install -y -qq "${pkgs[@]}" >&2 ||
    { ((${#must[@]} == 0)) || $SUDO apt-get install -y -qq "${must[@]}" >&2; }
fi
for t in qemu-img casync mkfs.ext4 debugfs e2fsck tar; do
  have "$t" || { log "missing $t"; exit 1; }
done
if [ -z "${HEXZ:-}" ]; then
  log "building hexz (release)"
  cargo build --release -p hexz-cli >&2
  HEXZ=$ROOT/target/release/hexz
fi
[ -x "$HEXZ" ] || { log "no hexz binary at $HEXZ"; exit 1; }

rm -rf "$W"
mkdir -p "$W/hx"
S1=$W/stage1
S2=$W/stage2
T0=$(date +%s)

# --- helpers ------------------------------------------------------------------------------
fsize() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { if (b < 1048576) printf "%.1f KiB", b / 1024; else printf "%.2f MiB", b / 1048576 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
jnum() { sed -n "s/.*\"$1\": \\([0-9.]*\\).*/\\1/p" | head -1; }
cacnk_bytes() { find "$1" -name '*.cacnk' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

# hexz_pack OUT IMG [BASE] ARGS... -> archive size
hexz_pack() {
  local out=$1 img=$2 base=$3
  shift 3
  local b=()
  [ -n "$base" ] && b=(--base "$base")
  "$HEXZ" pack --disk "$img" -o "$out" "${b[@]}" --json "$@" >"$out.json"
  "$HEXZ" cat "$out" | cmp -s - "$img" || { log "hexz round trip of $img failed"; exit 1; }
  fsize "$out"
}

# qcow_overlay V1QCOW V2IMG OUT -> size of a compressed overlay of V2IMG over V1QCOW
qcow_overlay() {
  local ov=$W/ov.qcow2
  rm -f "$ov"
  qemu-img create -q -f qcow2 -b "$2" -F raw "$ov" >&2
  qemu-img rebase -b "$1" -F qcow2 "$ov" >&2 # safe mode: copies clusters where v2 != v1
  qemu-img convert -O qcow2 -c -B "$1" -F qcow2 "$ov" "$3" >&2
  qemu-img compare -q "$2" "$3" || { log "qcow2 overlay $3 differs from $2"; exit 1; }
  rm -f "$ov"
  fsize "$3"
}

CASYNC_CHUNK=16384:65536:262144
# casync_growth BASESTORE IMG INDEX -> bytes of the chunks casync adds for IMG to a copy of
# BASESTORE (its index for IMG is written to INDEX)
casync_growth() {
  local s=$W/cs-tmp
  rm -rf "$s"
  cp -a "$1" "$s"
  local before after
  before=$(cacnk_bytes "$s")
  casync make --chunk-size=$CASYNC_CHUNK --store="$s" "$3" "$2" >/dev/null
  after=$(cacnk_bytes "$s")
  rm -rf "$s"
  echo $((after - before))
}

# time_median CMD... -> median seconds of RUNS runs (hyperfine when available)
time_median() {
  if have hyperfine; then
    hyperfine -N --style none --warmup 1 --runs "$RUNS" --export-json "$W/hf.json" -- "$*" >/dev/null 2>&1 ||
      hyperfine --style none --warmup 1 --runs "$RUNS" --export-json "$W/hf.json" -- "$*" >/dev/null
    grep -o '"median": *[0-9.e-]*' "$W/hf.json" | head -1 | awk '{ print $2 }'
  else
    "$@" >/dev/null 2>&1
    local i t0 t1
    for ((i = 0; i < RUNS; i++)); do
      t0=$(date +%s%N)
      "$@" >/dev/null 2>&1
      t1=$(date +%s%N)
      echo $(((t1 - t0) / 1000))
    done | sort -n | awk '{ v[NR] = $1 } END { printf "%.6f\n", v[int((NR + 1) / 2)] / 1e6 }'
  fi
}

# --- v1 tree: system files, sorted, up to DATA_MB (counted in whole 4 KiB blocks) ------------
log "choosing files"
{
  for d in /usr/include /usr/share/doc /usr/lib; do
    find "$d" -xdev -type f -size -8M -printf '%s\t%P\n' 2>/dev/null | sort -t $'\t' -k2 |
      sed "s|\t|\t${d#/}/|"
  done
} | awk -F '\t' '$2 !~ /[[:space:]"\\]/' >"$W/all.lst"
awk -F '\t' -v max=$((DATA_MB << 20)) -v v1="$W/v1.lst" -v pool="$W/pool.lst" '
  { r = int(($1 + 4095) / 4096) * 4096
    if (s + r <= max && !full) { s += r; print $2 > v1 } else { full = 1; print $2 > pool } }' \
  "$W/all.lst"
mkdir -p "$S1"
tar -C / --no-recursion -cf - -T "$W/v1.lst" | tar -C "$S1" -xf -
NFILES=$(wc -l <"$W/v1.lst")
DATA_BYTES=$(awk -F '\t' 'NR == FNR { want[$0] = 1; next } ($2 in want) { s += $1 } END { print s }' \
  "$W/v1.lst" "$W/all.lst")
log "v1: $NFILES files, $(mib "$DATA_BYTES")"

# --- v2 tree: remove 1/211 of the files, edit 1/199 in place, append 4 KiB to 1/197, add ~8 MB
log "making v2"
cp -a "$S1" "$S2"
mapfile -t POOL <"$W/pool.lst"
: >"$W/debugfs.cmds"
NRM=0 NED=0 NAP=0 NADD=0 ADDB=0 i=0 p=0
while IFS= read -r f; do
  i=$((i + 1))
  if ((i % 211 == 5)); then
    rm -f "$S2/$f"
    echo "rm /$f" >>"$W/debugfs.cmds"
    NRM=$((NRM + 1))
  elif ((i % 199 == 7)); then
    sz=$(fsize "$S2/$f")
    ((sz >= 32)) || continue
    printf 'EDITED-BY-BENCH!' | dd of="$S2/$f" bs=1 seek=$((sz / 2)) conv=notrunc status=none
    printf 'rm /%s\nwrite %s /%s\n' "$f" "$S2/$f" "$f" >>"$W/debugfs.cmds"
    NED=$((NED + 1))
  elif ((i % 197 == 11)); then
    head -c 4096 "/${POOL[p % ${#POOL[@]}]}" >>"$S2/$f"
    p=$((p + 1))
    printf 'rm /%s\nwrite %s /%s\n' "$f" "$S2/$f" "$f" >>"$W/debugfs.cmds"
    NAP=$((NAP + 1))
  fi
done <"$W/v1.lst"
mkdir -p "$S2/added"
echo "mkdir /added" >>"$W/debugfs.cmds"
while ((ADDB < 8000000)); do
  src=/${POOL[p % ${#POOL[@]}]}
  p=$((p + 1))
  n=$(printf '%04d-%s' "$NADD" "$(basename "$src")")
  cp "$src" "$S2/added/$n"
  echo "write $S2/added/$n /added/$n" >>"$W/debugfs.cmds"
  ADDB=$((ADDB + $(fsize "$src")))
  NADD=$((NADD + 1))
done
log "v2: $NRM removed, $NED edited, $NAP appended, $NADD added ($(mib $ADDB))"

log "mkfs.ext4 (v1, v2 rebuilt)"
mkfs_img() {
  mkfs.ext4 -q -F -b 4096 -i 8192 -U "$UUID" -E "hash_seed=$UUID,root_owner=0:0" -d "$1" "$2" \
    "${IMG_MB}M" >&2
}
mkfs_img "$S1" "$W/v1.img"
mkfs_img "$S2" "$W/v2r.img"
log "debugfs (v2 in place)"
cp --sparse=always "$W/v1.img" "$W/v2i.img"
debugfs -w -f "$W/debugfs.cmds" "$W/v2i.img" >/dev/null 2>"$W/debugfs.err"
if grep -v '^debugfs [0-9]' "$W/debugfs.err" | grep -q .; then
  log "debugfs reported:"
  head "$W/debugfs.err" >&2
  exit 1
fi
e2fsck -fn "$W/v2i.img" >/dev/null 2>&1 || { log "v2 in place fails e2fsck"; exit 1; }
e2fsck -fn "$W/v2r.img" >/dev/null 2>&1 || { log "v2 rebuilt fails e2fsck"; exit 1; }
USED=$(debugfs -R stats "$W/v1.img" 2>/dev/null | awk -F: '/^Free blocks/ { f = $2 } /^Block count/ { c = $2 } END { print (c - f) * 4096 }')
rm -rf "$S1" "$S2"

log "tar case"
TARSRC=/usr/include
TAROPTS=(--sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner)
tar "${TAROPTS[@]}" -C "$(dirname $TARSRC)" -cf "$W/t1.tar" "$(basename $TARSRC)"
mkdir -p "$W/ins"
head -c 3000 "$ROOT/docs/FORMAT.md" >"$W/ins/00-inserted.txt"
tar "${TAROPTS[@]}" -cf "$W/t2.tar" -C "$W/ins" 00-inserted.txt -C "$(dirname $TARSRC)" \
  "$(basename $TARSRC)"
rm -rf "$W/ins"

# --- hexz ------------------------------------------------------------------------------------
MODES=("fixed zstd|--compression zstd --level 3" "fixed lz4|--compression lz4"
  "cdc zstd|--cdc --compression zstd --level 3" "cdc lz4|--cdc --compression lz4")
declare -A SZ
for m in "${MODES[@]}"; do
  name=${m%%|*}
  read -r -a args <<<"${m#*|}"
  tag=${name// /-}
  for case in ext4 tar; do
    if [ $case = ext4 ]; then v1=$W/v1.img; else v1=$W/t1.tar; fi
    log "hexz $name: $case v1"
    SZ[$case,v1,$name]=$(hexz_pack "$W/hx/$case-$tag-v1.hxz" "$v1" "" "${args[@]}")
  done
  for v in v2r v2i t2; do
    if [ $v = t2 ]; then case=tar img=$W/t2.tar; else case=ext4 img=$W/$v.img; fi
    log "hexz $name: $v"
    SZ[$v,$name]=$(hexz_pack "$W/hx/$v-$tag.hxz" "$img" "$W/hx/$case-$tag-v1.hxz" "${args[@]}")
    SZ[$v,$name,stored]=$(jnum stored_bytes <"$W/hx/$v-$tag.hxz.json")
  done
done
# Standalone v2 for scale.
for v in v2r v2i t2; do
  if [ $v = t2 ]; then img=$W/t2.tar; else img=$W/$v.img; fi
  SZ[$v,full]=$(hexz_pack "$W/hx/$v-full.hxz" "$img" "" --compression zstd --level 3)
done

# --- qcow2 ------------------------------------------------------------------------------------
log "qcow2"
qemu-img convert -O qcow2 -c "$W/v1.img" "$W/v1.qcow2"
qemu-img convert -O qcow2 -c "$W/t1.tar" "$W/t1.qcow2"
SZ[ext4,v1,qcow]=$(fsize "$W/v1.qcow2")
SZ[tar,v1,qcow]=$(fsize "$W/t1.qcow2")
SZ[v2r,qcow]=$(qcow_overlay "$W/v1.qcow2" "$W/v2r.img" "$W/v2r-over-v1.qcow2")
SZ[v2i,qcow]=$(qcow_overlay "$W/v1.qcow2" "$W/v2i.img" "$W/v2i-over-v1.qcow2")
SZ[t2,qcow]=$(qcow_overlay "$W/t1.qcow2" "$W/t2.tar" "$W/t2-over-t1.qcow2")

# --- casync ----------------------------------------------------------------------------------
log "casync"
casync make --chunk-size=$CASYNC_CHUNK --store="$W/cs-ext4" "$W/v1.caibx" "$W/v1.img" >/dev/null
casync make --chunk-size=$CASYNC_CHUNK --store="$W/cs-tar" "$W/t1.caibx" "$W/t1.tar" >/dev/null
SZ[ext4,v1,casync]=$(cacnk_bytes "$W/cs-ext4")
SZ[tar,v1,casync]=$(cacnk_bytes "$W/cs-tar")
SZ[v2r,casync]=$(casync_growth "$W/cs-ext4" "$W/v2r.img" "$W/v2r.caibx")
SZ[v2i,casync]=$(casync_growth "$W/cs-ext4" "$W/v2i.img" "$W/v2i.caibx")
SZ[t2,casync]=$(casync_growth "$W/cs-tar" "$W/t2.tar" "$W/t2.caibx")
for v in v2r v2i t2; do
  SZ[$v,caibx]=$(fsize "$W/$v.caibx")
  SZ[$v,casyncidx]=$((SZ[$v,casync] + SZ[$v,caibx]))
done

# --- throughput ------------------------------------------------------------------------------
log "throughput"
# Output to tmpfs when there is one, so the final fsync does not time the disk.
TPDIR=$W
[ -d /dev/shm ] && [ -w /dev/shm ] && TPDIR=/dev/shm
TP=$TPDIR/hexz-bench-thin-tp.hxz
TIN=$W/t1.tar
TBYTES=$(fsize "$TIN")
IBYTES=$(fsize "$W/v1.img")
T_FIXED=$(time_median "$HEXZ" pack --disk "$TIN" --compression none -o "$TP")
T_CDC=$(time_median "$HEXZ" pack --disk "$TIN" --cdc --compression none -o "$TP")
T_DEDUP=$(time_median "$HEXZ" pack --disk "$W/v1.img" -o "$TP")
T_NODEDUP=$(time_median "$HEXZ" pack --disk "$W/v1.img" --no-dedup -o "$TP")
rm -f "$TP"
secs() { awk -v s="$1" 'BEGIN { printf "%.3f", s }'; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f MB/s", b / s / 1e6 }'; }

# --- report ----------------------------------------------------------------------------------
cell() { # size [reference]
  if [ -n "${2:-}" ]; then echo "$(mib "$1") ($(pct "$1" "$2"))"; else mib "$1"; fi
}
verdict() { if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; then echo met; else echo "**not met**"; fi; }
FZ="fixed zstd" FL="fixed lz4" CZ="cdc zstd" CL="cdc lz4"
{
  echo "## Thin snapshots: what version 2 costs when version 1 is stored"
  echo
  echo "Generated by \`scripts/bench-thin.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores," \
    "$(uname -sr), $("$HEXZ" --version), $(qemu-img --version | head -1 | cut -d' ' -f1-3)," \
    "casync $(casync --version 2>&1 | head -1 | awk '{ print $NF }')."
  echo
  echo "* **ext4**: v1 = a ${IMG_MB} MiB ext4 image (4 KiB blocks, \`mkfs.ext4 -d\`) holding" \
    "$NFILES files, $(mib "$DATA_BYTES") (/usr/include, /usr/share/doc, part of /usr/lib;" \
    "$(mib "$USED") of the image in use). v2: $NRM files removed, $NED edited in place" \
    "(16 bytes), $NAP appended to (4 KiB), $NADD added ($(mib "$ADDB"))."
  echo "  * *rebuilt*: v2 made by \`mkfs.ext4 -d\` from the modified tree (same UUID, hash seed and" \
    "times): every file after the first change is laid out afresh at another offset."
  echo "  * *in place*: the same changes applied with \`debugfs -w\` to a copy of v1.img:" \
    "unchanged files stay where they are (the same disk, later)."
  echo "* **tar**: \`tar\` of $TARSRC ($(mib "$TBYTES")), and the same tar with a 3000-byte file" \
    "inserted first: every later byte moves by 3584 bytes."
  echo
  echo "Sizes of v2 stored on top of v1 (percent: of v2 packed alone by hexz, fixed 64 KiB zstd-3)."
  echo "hexz sizes are whole archive files (header, index and block data) unless marked" \
    "\"block data\"; casync rows count the new compressed chunk files, without and with" \
    "casync's index of v2 (.caibx)."
  echo
  echo "| v2 on top of v1 | ext4 rebuilt | ext4 in place | tar, file inserted |"
  echo "|---|---:|---:|---:|"
  for n in "$FZ" "$FL" "$CZ" "$CL"; do
    case $n in
      "$FZ") label="hexz thin child, fixed 64 KiB, zstd-3" ;;
      "$FL") label="hexz thin child, fixed 64 KiB, LZ4" ;;
      "$CZ") label="hexz thin child, CDC 16/64/256 KiB, zstd-3" ;;
      "$CL") label="hexz thin child, CDC 16/64/256 KiB, LZ4" ;;
    esac
    echo "| $label | $(cell "${SZ[v2r,$n]}" "${SZ[v2r,full]}") | $(cell "${SZ[v2i,$n]}" "${SZ[v2i,full]}") | $(cell "${SZ[t2,$n]}" "${SZ[t2,full]}") |"
  done
  echo "| hexz thin child, CDC zstd-3: block data only | $(cell "${SZ[v2r,$CZ,stored]}" "${SZ[v2r,full]}") | $(cell "${SZ[v2i,$CZ,stored]}" "${SZ[v2i,full]}") | $(cell "${SZ[t2,$CZ,stored]}" "${SZ[t2,full]}") |"
  echo "| qcow2 overlay on v1.qcow2, compressed (zlib), 64 KiB clusters | $(cell "${SZ[v2r,qcow]}" "${SZ[v2r,full]}") | $(cell "${SZ[v2i,qcow]}" "${SZ[v2i,full]}") | $(cell "${SZ[t2,qcow]}" "${SZ[t2,full]}") |"
  echo "| casync new chunks (zstd, 16/64/256 KiB) | $(cell "${SZ[v2r,casync]}" "${SZ[v2r,full]}") | $(cell "${SZ[v2i,casync]}" "${SZ[v2i,full]}") | $(cell "${SZ[t2,casync]}" "${SZ[t2,full]}") |"
  echo "| casync new chunks + v2 index (.caibx) | $(cell "${SZ[v2r,casyncidx]}" "${SZ[v2r,full]}") | $(cell "${SZ[v2i,casyncidx]}" "${SZ[v2i,full]}") | $(cell "${SZ[t2,casyncidx]}" "${SZ[t2,full]}") |"
  echo "| *for scale: v2 alone, hexz fixed 64 KiB zstd-3* | $(mib "${SZ[v2r,full]}") | $(mib "${SZ[v2i,full]}") | $(mib "${SZ[t2,full]}") |"
  echo
  echo "v1 itself: hexz fixed zstd-3 $(mib "${SZ[ext4,v1,$FZ]}"), CDC zstd-3 $(mib "${SZ[ext4,v1,$CZ]}")," \
    "fixed LZ4 $(mib "${SZ[ext4,v1,$FL]}"); qcow2 (zlib) $(mib "${SZ[ext4,v1,qcow]}");" \
    "casync store $(mib "${SZ[ext4,v1,casync]}") (ext4). Tar: hexz fixed zstd-3" \
    "$(mib "${SZ[tar,v1,$FZ]}"), CDC zstd-3 $(mib "${SZ[tar,v1,$CZ]}"); qcow2 $(mib "${SZ[tar,v1,qcow]}");" \
    "casync $(mib "${SZ[tar,v1,casync]}")."
  echo
  echo "Throughput (median of $RUNS runs$(have hyperfine && echo ", hyperfine"), warm page cache," \
    "$(nproc) cores):"
  echo
  echo "| pack | input | median | throughput |"
  echo "|---|---|---:|---:|"
  echo "| fixed 64 KiB, \`--compression none\` | tar, $(mib "$TBYTES") | $(secs "$T_FIXED") s | $(rate "$TBYTES" "$T_FIXED") |"
  echo "| CDC 16/64/256 KiB, \`--compression none\` | tar, $(mib "$TBYTES") | $(secs "$T_CDC") s | $(rate "$TBYTES" "$T_CDC") |"
  echo "| fixed 64 KiB LZ4, dedup on (default) | v1.img, $(mib "$IBYTES") | $(secs "$T_DEDUP") s | $(rate "$IBYTES" "$T_DEDUP") |"
  echo "| fixed 64 KiB LZ4, \`--no-dedup\` | v1.img, $(mib "$IBYTES") | $(secs "$T_NODEDUP") s | $(rate "$IBYTES" "$T_NODEDUP") |"
  echo
  echo "Targets:"
  echo
  for v in v2r v2i t2; do
    case $v in v2r) what="ext4 rebuilt" ;; v2i) what="ext4 in place" ;; t2) what="tar" ;; esac
    echo "* fixed-block child smaller than the qcow2 overlay ($what): zstd-3 $(mib "${SZ[$v,$FZ]}")," \
      "LZ4 $(mib "${SZ[$v,$FL]}") vs qcow2 $(mib "${SZ[$v,qcow]}"):" \
      "$(verdict "${SZ[$v,$FZ]}" "$((SZ[$v,qcow] - 1))") (zstd-3)," \
      "$(verdict "${SZ[$v,$FL]}" "$((SZ[$v,qcow] - 1))") (LZ4)."
  done
  for v in v2r v2i t2; do
    case $v in v2r) what="ext4 rebuilt" ;; v2i) what="ext4 in place" ;; t2) what="tar" ;; esac
    lim=$((SZ[$v,casyncidx] * 110 / 100))
    dlim=$((SZ[$v,casync] * 110 / 100))
    echo "* CDC child <= casync new chunks + 10% ($what): whole child (zstd-3)" \
      "$(mib "${SZ[$v,$CZ]}") vs chunks + index $(mib "${SZ[$v,casyncidx]}") + 10% = $(mib "$lim"):" \
      "$(verdict "${SZ[$v,$CZ]}" "$lim"); block data $(mib "${SZ[$v,$CZ,stored]}") vs chunks" \
      "$(mib "${SZ[$v,casync]}") + 10% = $(mib "$dlim"): $(verdict "${SZ[$v,$CZ,stored]}" "$dlim");" \
      "whole child vs chunks alone: $(verdict "${SZ[$v,$CZ]}" "$dlim")."
  done
  echo
  echo "_Whole run: $(($(date +%s) - T0)) s._"
} | tee "$RES"

# --- clean up --------------------------------------------------------------------------------
if [ "${KEEP:-0}" != 1 ]; then
  rm -rf "$W/hx" "$W"/cs-* "$W"/*.img "$W"/*.tar "$W"/*.qcow2 "$W"/*.caibx "$W/tp.hxz" \
    "$W/all.lst" "$W/pool.lst"
fi
log "results saved to $RES"
