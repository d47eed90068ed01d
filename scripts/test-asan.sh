#!/usr/bin/env bash
# Runs a subset of the test suite against the ASan + UBSan build of the addon.
#
#   bash scripts/test-asan.sh                 # the default subset (below)
#   bash scripts/test-asan.sh conformance     # only files whose path contains "conformance"
#
# What it does:
#   1. builds build-asan/Debug/node_lws.node with `npm run build:asan` (cmake-js, gcc,
#      -fsanitize=address,undefined -O1 -g) when it is missing or older than any file in
#      native/, CMakeLists.txt or binding.gyp (NODE_LWS_ASAN_REBUILD=1 forces a rebuild);
#   2. runs `node scripts/run-tests.mjs <files>` with the sanitizer build loaded through
#      NODE_LWS_BINDING, libasan LD_PRELOADed into node (node itself is not instrumented);
#   3. fails when a test fails, OR when the output contains a sanitizer report
#      (`ERROR: AddressSanitizer`, `ERROR: LeakSanitizer`, `runtime error:` from UBSan,
#      `AddressSanitizer:DEADLYSIGNAL`) even if every test passed: a report inside a child
#      process or after a file's summary would otherwise go unnoticed.
#
# Default subset (files that only need node and loopback TCP; browser/python peers are left
# out because LD_PRELOAD would be inherited by chromium/python, and the soak test is left out
# because ASan's quarantine makes its RSS bound meaningless):
#   listen-close-cycles, server, rfc6455-conformance, client, message-order, lend-messages,
#   connection-handles,
#   send-backpressure, whatwg-websocket, worker-threads, event-loop, emfile, publish-subscribe,
#   handshake-headers, unix-socket, proxy-errors, handle-upgrade, admission, unfinished-messages,
#   send-limit, tls-hello-wait, http,
#   ws-api, system/network-fuzz
#   (FUZZ_SECONDS defaults to 20 here too)
#
# Env:
#   ASAN_DETECT_LEAKS=1     run with detect_leaks=1 and scripts/lsan-node.supp (only node's
#                           N-API bookkeeping records still alive at exit are suppressed); leak
#                           reports then also fail the run. Usable: node itself reports nothing
#                           else at exit, so what remains is node-lws's (or lws's) own.
#   TEST_FILE_TIMEOUT_MS    per-file timeout (default here 300000: ASan is 2-5x slower)
#   ASAN_LOG                where the combined output is kept (default test-artifacts/asan.log)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=build-asan/Debug/node_lws.node

DEFAULT_FILES=(
  test/listen-close-cycles.test.mjs
  test/server.test.mjs
  test/rfc6455-conformance.test.mjs
  test/client.test.mjs
  test/message-order.test.mjs
  test/lend-messages.test.mjs
  test/connection-handles.test.mjs
  test/send-backpressure.test.mjs
  test/whatwg-websocket.test.mjs
  test/worker-threads.test.mjs
  test/event-loop.test.mjs
  test/emfile.test.mjs
  test/publish-subscribe.test.mjs
  test/write-coalescing.test.mjs
  test/delivery-windows.test.mjs
  test/handshake-headers.test.mjs
  test/unix-socket.test.mjs
  test/proxy-errors.test.mjs
  test/handle-upgrade.test.mjs
  test/admission.test.mjs
  test/unfinished-messages.test.mjs
  test/send-limit.test.mjs
  test/tls-hello-wait.test.mjs
  test/http.test.mjs
  test/ws-api.test.mjs
  test/system/network-fuzz.test.mjs
)

if [[ $# -gt 0 ]]; then
  FILES=("$@")
else
  FILES=()
  for f in "${DEFAULT_FILES[@]}"; do [[ -f $f ]] && FILES+=("$f"); done
fi

# ---- 1. build when stale -------------------------------------------------------------
stale=0
if [[ ! -f $OUT || ${NODE_LWS_ASAN_REBUILD:-0} == 1 ]]; then
  stale=1
elif [[ -n $(find native CMakeLists.txt binding.gyp -newer "$OUT" -print -quit 2>/dev/null) ]]; then
  stale=1
fi
if [[ $stale == 1 ]]; then
  echo "test-asan: building $OUT (npm run build:asan)"
  npm run --silent build:asan </dev/null
else
  echo "test-asan: $OUT is up to date"
fi
[[ -f dist/index.mjs ]] || npm run --silent build:ts </dev/null

# ---- 2. the sanitizer environment ------------------------------------------------------
LIBASAN=$(gcc -print-file-name=libasan.so)
if [[ ! -e $LIBASAN ]]; then
  echo "test-asan: libasan.so not found (gcc -print-file-name=libasan.so gave '$LIBASAN')" >&2
  exit 2
fi
# The .node must have been linked against the same libasan as the one preloaded. (Not `grep -q`:
# it exits at the first match, ldd then dies of SIGPIPE, and pipefail fails the check at random.)
if ! ldd "$OUT" | grep libasan >/dev/null; then
  echo "test-asan: $OUT is not linked against libasan; rebuild with NODE_LWS_ASAN_REBUILD=1" >&2
  exit 2
fi

asan_opts=(
  abort_on_error=0
  halt_on_error=1
  detect_stack_use_after_return=0
)
if [[ ${ASAN_DETECT_LEAKS:-0} == 1 ]]; then
  asan_opts+=(detect_leaks=1)
  export LSAN_OPTIONS="suppressions=$ROOT/scripts/lsan-node.supp:print_suppressions=0:report_objects=0"
else
  asan_opts+=(detect_leaks=0)
fi

export NODE_LWS_BINDING="$OUT"
export LD_PRELOAD="$LIBASAN"
export ASAN_OPTIONS
ASAN_OPTIONS=$(IFS=:; echo "${asan_opts[*]}")
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TEST_FILE_TIMEOUT_MS="${TEST_FILE_TIMEOUT_MS:-300000}"
export FUZZ_SECONDS="${FUZZ_SECONDS:-20}"

LOG=${ASAN_LOG:-test-artifacts/asan.log}
mkdir -p "$(dirname "$LOG")"

echo "test-asan: LD_PRELOAD=$LD_PRELOAD"
echo "test-asan: ASAN_OPTIONS=$ASAN_OPTIONS"
echo "test-asan: UBSAN_OPTIONS=$UBSAN_OPTIONS"
echo "test-asan: files: ${FILES[*]}"

# ---- 3. run, keep the output, judge ------------------------------------------------------
set +e
node scripts/run-tests.mjs "${FILES[@]}" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e

PATTERN='ERROR: AddressSanitizer|ERROR: LeakSanitizer|AddressSanitizer:DEADLYSIGNAL|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer'
reports=$(grep -cE "$PATTERN" "$LOG" || true)

echo
if [[ $reports -gt 0 ]]; then
  echo "test-asan: $reports sanitizer report line(s) in $LOG:"
  grep -nE "$PATTERN" "$LOG" | head -40
fi
if [[ $rc -ne 0 || $reports -gt 0 ]]; then
  echo "test-asan: FAILED (tests exit code $rc, sanitizer reports $reports)"
  exit 1
fi
echo "test-asan: OK (no sanitizer reports; log in $LOG)"
