#!/usr/bin/env bash
# Build prebuilds/<platform>-<arch>/*.node (prebuildify --napi --strip) linked against a static,
# PIC, symbol-hidden libwebsockets, so the prebuilt addon needs no system libwebsockets.
#
#   bash scripts/prebuild.sh            # npm run prebuild
#
# 1. scripts/build-lws-static.sh -> build/lws-static (reused when up to date).
# 2. prebuildify runs node-gyp in a staging copy (build/prebuild-stage: binding.gyp, package.json,
#    native/) because `node-gyp rebuild` deletes ./build, which holds build/lws-static and the
#    development addon build/Release. binding.gyp is used unchanged: PKG_CONFIG_PATH puts
#    build/lws-static/pkgconfig first, so `pkg-config --cflags/--libs libwebsockets` give the
#    static headers and `-Wl,--exclude-libs,ALL -L build/lws-static/lib -lwebsockets`; that
#    directory holds only libwebsockets.a, so binding.gyp's own -lwebsockets resolves to it too.
# 3. Checks the result: no NEEDED libwebsockets, libev, libssl, libcrypto or libz, every symbol
#    left to the loader defined by node or a library the addon needs, no exported lws_* or ev_*
#    symbol, loads in Node and runs its context on the libev loop compiled in (epoll).
# libev is linked in statically with lws (scripts/build-lws-static.sh). OpenSSL and zlib are
# Node's own: the addon leaves their symbols undefined and the loader binds them to those Node
# exports (scripts/node-libs.cjs), so it needs no libssl.so.3 or libz.so.1 and the process holds
# one OpenSSL and one zlib.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { echo "prebuild: $*"; }
die() {
  echo "prebuild: error: $*" >&2
  exit 1
}

bash scripts/build-lws-static.sh
PREFIX="$ROOT/build/lws-static"
[ -f "$PREFIX/pkgconfig/libwebsockets.pc" ] || die "build/lws-static is incomplete"

[ -x node_modules/.bin/prebuildify ] || die "node_modules/.bin/prebuildify missing (run npm ci)"
[ -x node_modules/.bin/node-gyp ] || die "node_modules/.bin/node-gyp missing (run npm ci)"

STAGE="$ROOT/build/prebuild-stage"
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp package.json binding.gyp "$STAGE/"
cp -r native "$STAGE/native"
mkdir -p "$STAGE/scripts"
cp scripts/libev-flags.cjs scripts/node-libs.cjs "$STAGE/scripts/" # binding.gyp asks them

# Node's own headers next to the running node (e.g. /usr/include/node): no header download.
NODE_PREFIX="$(cd "$(dirname "$(readlink -f "$(command -v node)")")/.." && pwd)"
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$NODE_PREFIX/include/node/node_api.h" ]; then
  export npm_config_nodedir="$NODE_PREFIX"
fi
export PKG_CONFIG_PATH="$PREFIX/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}" # node-gyp --jobs
[ "$(pkg-config --modversion libwebsockets)" = 4.1.6 ] || die "pkg-config does not see build/lws-static"
case "$(pkg-config --libs libwebsockets)" in
  *"$PREFIX/lib"*) ;;
  *) die "pkg-config --libs libwebsockets does not point at $PREFIX/lib" ;;
esac

log "prebuildify --napi --strip (node-gyp in $STAGE)"
start=$(date +%s)
rm -rf "$ROOT/prebuilds"
gyp_log="$STAGE/prebuildify.log"
if ! (cd "$STAGE" && "$ROOT/node_modules/.bin/prebuildify" --napi --strip --out "$ROOT") >"$gyp_log" 2>&1; then
  cat "$gyp_log" >&2
  die "prebuildify failed"
fi

PLATFORM_DIR="$ROOT/prebuilds/$(node -p 'process.platform + "-" + process.arch')"
addon="$(ls "$PLATFORM_DIR"/*.node 2>/dev/null | head -n1 || true)"
[ -n "$addon" ] || die "prebuildify produced no $PLATFORM_DIR/*.node"

# ---- checks -----------------------------------------------------------------------------------
needed="$(readelf -d "$addon" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
case "$needed" in *libwebsockets*) die "$addon still needs a shared libwebsockets: $needed" ;; esac
case "$needed" in *libev*) die "$addon still needs a shared libev: $needed" ;; esac
case "$needed" in *libssl* | *libcrypto*) die "$addon needs the system's OpenSSL: $needed" ;; esac
case "$needed" in *libz.*) die "$addon needs the system's zlib: $needed" ;; esac
# Every symbol the addon leaves to the loader must be defined by node (N-API, and OpenSSL and
# zlib: Node's own) or by a library the addon needs. A node built with a shared OpenSSL or zlib
# defines those in the libssl/libcrypto/libz it links.
node_bin="$(readlink -f "$(command -v node)")"
providers="$node_bin $(ldd "$node_bin" "$addon" | awk '{ for (i = 1; i <= NF; i++)
  if ($i ~ /^\// && $i !~ /:$/) print $i }' | sort -u | tr '\n' ' ')"
defined_syms() {
  # shellcheck disable=SC2086 # one path per word
  nm -D --defined-only "$@" | awk 'NF == 3 {print $3}' | sed 's/@.*//' | sort -u
}
undefined="$(nm -D --undefined-only "$addon" | awk '$1 == "U" {print $2}' | sed 's/@.*//' | sort -u)"
# shellcheck disable=SC2086
missing_syms="$(comm -23 <(echo "$undefined") <(defined_syms $providers))"
[ -z "$missing_syms" ] || die "nothing in node or the libraries $addon needs defines: $missing_syms"
from_node="$(comm -12 <(echo "$undefined") <(defined_syms "$node_bin"))"
ssl_from_node="$(echo "$from_node" | grep -c '^SSL_' || true)"
[ "$ssl_from_node" -gt 0 ] || die "$addon takes no OpenSSL symbol from node (expected Node's own)"
zlib_from_node="$(echo "$from_node" | grep -cE '^(deflate|inflate)' || true)"
[ "$zlib_from_node" -gt 0 ] || die "$addon takes no zlib symbol from node (expected Node's own)"
exported="$(nm -D --defined-only "$addon" | grep -c ' lws_' || true)"
[ "$exported" = 0 ] || die "$addon exports $exported lws_* symbols (expected 0)"
exported_ev="$(nm -D --defined-only "$addon" | grep -c ' ev_' || true)"
[ "$exported_ev" = 0 ] || die "$addon exports $exported_ev ev_* symbols (expected 0)"
undef_lws="$(nm -D --undefined-only "$addon" | grep -E ' (lws|lejp|_lws)' || true)"
[ -z "$undef_lws" ] || die "$addon has unresolved lws symbols: $undef_lws"
node -e 'require(process.argv[1])' "$addon" || die "$addon does not load"
# The context runs on the libev loop compiled in (not poll, and no plugin to load).
loop="$(node -e '
  const b = require(process.argv[1]);
  b.init(() => {}, 3, () => {}, "auto");
  const l = b.eventLoop();
  console.log(l ? `${l.loop}/${l.backend}${l.fallback ? ` (${l.fallback})` : ""}` : "none");
  process.exit(0);
' "$addon")" || die "$addon: the native context does not start"
[ "$loop" = libev/epoll ] || die "$addon runs the $loop event loop (expected libev/epoll)"

log "done in $(($(date +%s) - start)) s: ${addon#"$ROOT"/} ($(du -k "$addon" | cut -f1) KiB)"
log "NEEDED: $needed"
log "symbols node defines: $(echo "$from_node" | wc -l) (N-API, libuv, OpenSSL: $ssl_from_node SSL_*, zlib: $zlib_from_node)"
log "exported lws_* symbols: $exported, ev_* symbols: $exported_ev"
log "event loop: $loop"
