#!/usr/bin/env bash
# Builds and runs the libFuzzer target fuzz/frame_fuzzer.cc (node-lws's own RFC 6455 / HTTP
# code: native/frame_reader, ws_frame, http, deflate) without CMake.
#
#   bash scripts/fuzz.sh              # build if stale, fuzz for 60 s
#   bash scripts/fuzz.sh 600          # fuzz for 600 s
#   bash scripts/fuzz.sh 0 crash-...  # build, then re-run one saved input (reproduce a finding)
#
# Needs clang with the libFuzzer runtime: apt-get install -y clang libclang-rt-14-dev
# Output: fuzz/build/frame_fuzzer, the grown corpus in fuzz/build/corpus, crash files
# (crash-*, leak-*, timeout-*) in fuzz/build/. Exit code non-zero on a finding.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_TO_RUN=${1:-60}
OUT=fuzz/build
BIN=$OUT/frame_fuzzer
CXX=${CXX_FUZZ:-$(command -v clang++ || command -v clang++-14 || true)}
if [[ -z $CXX ]]; then
  echo "fuzz: clang++ not found (apt-get install -y clang libclang-rt-14-dev)" >&2
  exit 2
fi

mkdir -p "$OUT/corpus"
SRCS=(native/frame_reader.cc native/ws_frame.cc native/http.cc native/deflate.cc native/buffers.cc native/random.cc)
if [[ ! -x $BIN || -n $(find fuzz/frame_fuzzer.cc "${SRCS[@]}" native/*.h -newer "$BIN" -print -quit) ]]; then
  echo "fuzz: building $BIN with $CXX"
  # shellcheck disable=SC2046
  "$CXX" -std=c++17 -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Inative $(pkg-config --cflags libwebsockets) \
    fuzz/frame_fuzzer.cc "${SRCS[@]}" \
    $(pkg-config --libs libwebsockets) -lcrypto -lz -o "$BIN"
fi

if [[ $# -ge 2 ]]; then
  shift
  exec "$BIN" "$@"
fi

JOBS=${FUZZ_JOBS:-1}
echo "fuzz: running $BIN for ${SECONDS_TO_RUN}s ($JOBS job(s))"
cd "$OUT"
args=(-max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
  -max_len=4096 -dict=../ws.dict)
if [[ $JOBS -gt 1 ]]; then args+=(-jobs="$JOBS" -workers="$JOBS"); fi
exec ./frame_fuzzer "${args[@]}" corpus ../corpus
