#!/usr/bin/env bash
# Remote benchmarks for docs/BENCHMARKS.md ("Remote"): one archive served on loopback by nginx
# (HTTP range requests) and SeaweedFS (S3), measured in the same run against curl downloading
# the same file and hexz reading it locally.
#
#   scripts/bench-remote.sh            # 1 GiB ext4 image of /usr (bench-data/remote.img)
#   SIZE=512M RUNS=3 scripts/bench-remote.sh
#
# Reports: requests to open; requests and mean request size of a full sequential read; cold
# full read vs the slower of (curl download, local hexz read); 2nd pass with --cache-dir
# (requests, throughput vs local); random 4 KiB reads over HTTP cold and warm (median, p99);
# peak RSS of a full remote read. Work files live on the real disk (bench-data/), not tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
scripts/deps.sh bench >/dev/null 2>&1 || true
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release -p hexz-cli -p hexz-core --example remoterand --bins >/dev/null
hexz=$PWD/target/release/hexz
rand=$PWD/target/release/examples/remoterand
runs=${RUNS:-3}
data=$PWD/bench-data
mkdir -p "$data"
img=$data/remote-${SIZE:-1G}.img
[ -f "$img" ] || scripts/mkimage.sh "$img" "${SIZE:-1G}"
work=$(mktemp -d "$data/remote.XXXXXX")
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export HEXZ_ALLOW_RESTRICTED=1

# nginx on a free port, logging request line, status and body bytes.
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
mkdir -p "$work/www" "$work/ng"
chmod 755 "$work/www" "$work/ng"
cat >"$work/ng/nginx.conf" <<CONF
daemon off; master_process off; pid $work/ng/nginx.pid; error_log $work/ng/error.log;
events { worker_connections 256; }
http {
  log_format b '\$request_method \$status \$body_bytes_sent';
  access_log $work/ng/access.log b;
  client_body_temp_path $work/ng/body; proxy_temp_path $work/ng/proxy;
  fastcgi_temp_path $work/ng/fcgi; uwsgi_temp_path $work/ng/uwsgi; scgi_temp_path $work/ng/scgi;
  sendfile on; keepalive_requests 100000;
  server { listen 127.0.0.1:$port; root $work/www; }
}
CONF
nginx -p "$work/ng" -e "$work/ng/error.log" -c "$work/ng/nginx.conf" & pids+=($!)
ngpid=$!

# SeaweedFS with one identity and the bucket `bench`.
. scripts/weed-lib.sh
start_weed "$work/weed"

echo "pack..." >&2
"$hexz" pack --disk "$img" -o "$work/www/a.hxz" >/dev/null 2>&1
chmod 644 "$work/www/a.hxz"
"$hexz" push "$work/www/a.hxz" s3://bench/a.hxz >/dev/null 2>&1
url=http://127.0.0.1:$port/a.hxz
s3=s3://bench/a.hxz
asize=$(stat -L -c %s "$work/www/a.hxz")
dsize=$(stat -L -c %s "$img")
log=$work/ng/access.log
mark() { wc -l <"$log"; }
since() { tail -n +"$(( $1 + 1 ))" "$log"; }
secs() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
best() { local i; for i in $(seq "$runs"); do secs "$@"; done | median; }

# Requests to open.
m=$(mark); "$hexz" info "$url" >/dev/null; open_req=$(since "$m" | wc -l)
# Full sequential read, cold (no disk cache): requests and mean request size.
m=$(mark); cold=$(secs "$hexz" cat "$url")
read_req=$(since "$m" | grep -c '^GET 206' || true)
read_bytes=$(since "$m" | awk '$2==206 {s+=$3} END {print s+0}')
cold=$(best "$hexz" cat "$url")
cold_s3=$(best "$hexz" cat "$s3")
curl_t=$(best curl -s -o /dev/null "$url")
curl_s3=$(best curl -s -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" --user benchkey:benchsecret "$AWS_ENDPOINT_URL/bench/a.hxz")
local_t=$(best "$hexz" cat "$work/www/a.hxz")
# CPU seconds of one S3 read, in hexz (or curl) and in the S3 server: on a 2-core machine
# hosting both, the server's CPU competes with hexz's decoding (nginx's sendfile needs none).
wpid=$weed_pid
wcpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$wpid/stat"; }
cpu_of() { /usr/bin/time -o "$work/cpu" -f "%U %S" "$@" >/dev/null 2>&1; awk '{print $1+$2}' "$work/cpu"; }
w0=$(wcpu); hexz_cpu=$(cpu_of "$hexz" cat "$s3"); w1=$(wcpu); weed_hexz=$(echo "$w1 - $w0" | bc)
w0=$(wcpu); curl_cpu=$(cpu_of curl -s -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" --user benchkey:benchsecret "$AWS_ENDPOINT_URL/bench/a.hxz"); w1=$(wcpu); weed_curl=$(echo "$w1 - $w0" | bc)
# The same for HTTP (nginx serves with sendfile; the loopback TCP stack is charged to both
# sides), and hexz's CPU for a local read: together they bound what 2 shared cores allow.
ncpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$ngpid/stat"; }
n0=$(ncpu); hexz_http_cpu=$(cpu_of "$hexz" cat "$url"); n1=$(ncpu); ng_hexz=$(echo "$n1 - $n0" | bc)
n0=$(ncpu); curl_http_cpu=$(cpu_of curl -s -o /dev/null "$url"); n1=$(ncpu); ng_curl=$(echo "$n1 - $n0" | bc)
local_cpu=$(cpu_of "$hexz" cat "$work/www/a.hxz")
# Second pass with a disk cache.
cache=$work/cache
"$hexz" cat "$url" --cache-dir "$cache" >/dev/null
m=$(mark); warm=$(secs "$hexz" cat "$url" --cache-dir "$cache"); warm_req=$(since "$m" | wc -l)
warm=$(best "$hexz" cat "$url" --cache-dir "$cache")
# Random 4 KiB reads over HTTP, cold and warm.
randj=$("$rand" "$url" 300)
# Peak RSS of a full remote read.
rss=$( { /usr/bin/time -v "$hexz" cat "$url" >/dev/null; } 2>&1 | awk -F: '/Maximum resident/ {print $2+0}')

python3 - "$dsize" "$asize" "$open_req" "$read_req" "$read_bytes" "$cold" "$cold_s3" "$curl_t" \
  "$local_t" "$warm_req" "$warm" "$randj" "$rss" "$runs" "$curl_s3" <<'PY'
import json, sys
(d, a, oreq, rreq, rbytes, cold, cold_s3, curl_t, local_t, wreq, warm, randj, rss, runs, curl_s3) = sys.argv[1:]
d, a = int(d), int(a)
cold, cold_s3, curl_t, local_t, warm, curl_s3 = map(float, (cold, cold_s3, curl_t, local_t, warm, curl_s3))
ref_s3 = max(curl_s3, local_t)
mib = lambda s: d / s / 2**20
ref = max(curl_t, local_t)
r = json.loads(randj)
avg = int(rbytes) / max(int(rreq), 1)
print(f"""Stream {d/2**20:.0f} MiB (ext4 image), archive {a/2**20:.0f} MiB (LZ4, 64 KiB blocks); median of {runs} runs.

| measure | value | target |
|---|---|---|
| requests to open (`hexz info`, HTTP) | {oreq} | <= 4 |
| full sequential read: requests / mean request size | {rreq} / {avg/2**20:.2f} MiB | mean >= 1 MiB |
| curl download of the archive file (nginx) | {curl_t:.2f} s ({a/curl_t/2**20:.0f} MiB/s of archive) | |
| curl download of the archive object (S3, signed) | {curl_s3:.2f} s ({a/curl_s3/2**20:.0f} MiB/s of archive) | |
| hexz cat, local archive | {local_t:.2f} s ({mib(local_t):.0f} MiB/s) | |
| hexz cat, HTTP cold | {cold:.2f} s ({mib(cold):.0f} MiB/s) = **{ref/cold:.2f}x** the slower reference | >= 0.7x |
| hexz cat, S3 cold | {cold_s3:.2f} s ({mib(cold_s3):.0f} MiB/s) = **{ref_s3/cold_s3:.2f}x** the slower S3 reference | >= 0.7x |
| 2nd pass with --cache-dir: requests | {wreq} | 0 |
| 2nd pass with --cache-dir | {warm:.2f} s ({mib(warm):.0f} MiB/s) = **{local_t/warm:.2f}x** local | >= 0.8x |
| random 4 KiB over HTTP, cold: median / p99 | {r['cold_median_us']:.0f} / {r['cold_p99_us']:.0f} µs | |
| random 4 KiB over HTTP, warm (memory cache): median / p99 | {r['warm_median_us']:.1f} / {r['warm_p99_us']:.1f} µs | |
| peak RSS, full HTTP read (`hexz cat`, 96 MiB block cache: 12x its 8 MiB read-ahead) | {int(rss)/1024:.0f} MB | < 150 MB + cache |
""")
PY
echo "CPU of one full HTTP read: hexz ${hexz_http_cpu} s + nginx ${ng_hexz} s; curl ${curl_http_cpu} s + nginx ${ng_curl} s; a local read takes hexz ${local_cpu} s."
echo "CPU of one full S3 read: hexz ${hexz_cpu} s + SeaweedFS ${weed_hexz} s; signed curl ${curl_cpu} s + SeaweedFS ${weed_curl} s (2 cores shared by client and server)."
