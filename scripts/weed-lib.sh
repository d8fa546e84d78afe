# Sourced by the benchmark scripts (bench-remote.sh, bench-s3-ranges.sh, ab-s3.sh), not run.
# start_weed DIR: starts SeaweedFS (its S3 API checks SigV4 signatures) on free loopback
# ports with its data under DIR and one identity (benchkey / benchsecret), waits until it
# answers, and creates the bucket `bench`. Appends its pid to the caller's `pids` array (the
# caller's EXIT trap kills those), sets `weed_pid`, and exports AWS_ENDPOINT_URL and the
# AWS_* credentials for it.
start_weed() {
  local dir=$1 venv=${HEXZ_VENV:-/var/cache/hexz/venv} weed ports
  weed=$(command -v weed || echo "$venv/bin/weed")
  ports=($(python3 -c 'import socket
ps=[]
while len(ps)<8:
  s=socket.socket();s.bind(("127.0.0.1",0));p=s.getsockname()[1]
  if p<55000 and p not in ps: ps.append(p)
print(*ps)'))
  mkdir -p "$dir"
  echo '{"identities":[{"name":"b","credentials":[{"accessKey":"benchkey","secretKey":"benchsecret"}],"actions":["Admin","Read","Write","List"]}]}' >"$dir/s3.json"
  "$weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$dir" -master.port="${ports[0]}" \
    -master.port.grpc="${ports[1]}" -volume.port="${ports[2]}" -volume.port.grpc="${ports[3]}" \
    -filer.port="${ports[4]}" -filer.port.grpc="${ports[5]}" -s3 -s3.port="${ports[6]}" \
    -s3.port.grpc="${ports[7]}" -s3.port.iceberg=0 -s3.port.lance=0 -master.volumeSizeLimitMB=1024 \
    -volume.max=20 -s3.config="$dir/s3.json" >"$dir/log" 2>&1 &
  weed_pid=$!
  pids+=("$weed_pid")
  export AWS_ENDPOINT_URL=http://127.0.0.1:${ports[6]} AWS_ACCESS_KEY_ID=benchkey \
    AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
  for _ in $(seq 120); do curl -s -o /dev/null "$AWS_ENDPOINT_URL" && break; sleep 0.5; done
  curl -s -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user benchkey:benchsecret \
    "$AWS_ENDPOINT_URL/bench" >/dev/null
}

# s3_bench_setup NAME: the common start of the S3 benchmarks (ab-s3.sh, bench-s3-ranges.sh),
# run from the repository root. Sets `img` (BENCH_IMAGE, else bench-data/system.img, made by
# scripts/mkimage.sh when missing) and `work` (a new directory bench-data/NAME.XXXXXX), and
# an EXIT trap that stops the servers started and removes `work`; allows loopback URLs
# (HEXZ_ALLOW_RESTRICTED=1) and starts SeaweedFS in `work/weed` (start_weed).
s3_bench_setup() {
  img=${BENCH_IMAGE:-$PWD/bench-data/system.img}
  [ -f "$img" ] || scripts/mkimage.sh "$img" 2G
  work=$(mktemp -d "$PWD/bench-data/$1.XXXXXX")
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
  export HEXZ_ALLOW_RESTRICTED=1
  start_weed "$work/weed"
}
