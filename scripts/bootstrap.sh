#!/usr/bin/env bash
# Idempotent set-up for node-lws on a fresh Debian 12 machine (as root, or with sudo).
# Called first by `npm test`, `npm run stress`, `npm run bench` and .ci/run; every step is
# skipped when already satisfied, so a second run is quick and prints one line.
#
#   bash scripts/bootstrap.sh          # runtime + build needs
#   bash scripts/bootstrap.sh --dev    # also developer tools (clang-format, cmake); implied by CI=true
#
# Steps: a) system packages  b) npm ci  c) native addon (node-gyp)  d) TypeScript (tsc)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    -h | --help)
      sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "bootstrap: unknown argument: $arg" >&2
      exit 2
      ;;
  esac
done
if [ "${CI:-}" = "true" ]; then DEV=1; fi

# ---------------------------------------------------------------------------------------------
# EXTRA SYSTEM PACKAGES. Debian package names that tests / stress / bench need beyond the
# build tools below (e.g. chromium chromium-driver python3-websockets). Each is installed with
# apt-get when `dpkg-query` says it is not installed. Add them here, space separated.
# python3-websockets: test/system/python-interop.test.mjs (used through /usr/bin/python3,
# Debian's own interpreter, not whichever python3 comes first in PATH). chromium:
# test/system/chromium.test.mjs (driven by the playwright-core devDependency through
# executablePath /usr/bin/chromium; no browser download).
# openssl: test/tls.test.mjs makes its certificates with the openssl command.
# libwebsockets-evlib-ev + libev-dev: the service thread's libev event loop (lws loads the plugin,
# the addon links libev; both are dependencies of libwebsockets-dev, named here so that a machine
# where they went missing gets them back instead of silently running lws's poll() loop).
# tinyproxy: test/system/proxy.test.mjs starts it (its own config, a free port) as the HTTP
# CONNECT proxy the client tunnels through.
# redis-server: the Redis adapter's tests (test/system/redis-*.test.mjs, the cluster example's)
# and its bench rows start their own redis-server on a free port (no service is used).
EXTRA_APT_PACKAGES=(python3-websockets chromium openssl libwebsockets-evlib-ev libev-dev tinyproxy
  redis-server)
# Same, but only with --dev / CI=true.
EXTRA_APT_PACKAGES_DEV=()
# ---------------------------------------------------------------------------------------------

log() { echo "bootstrap: $*"; }
die() {
  echo "bootstrap: error: $*" >&2
  exit 1
}
did=0

# ---- a) system packages ---------------------------------------------------------------------
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
deb_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

have pkg-config || missing+=(pkg-config)
if ! have pkg-config || ! pkg-config --exists libwebsockets; then missing+=(libwebsockets-dev); fi
have g++ || missing+=(g++)
have make || missing+=(make)
have python3 || missing+=(python3)
extras=(${EXTRA_APT_PACKAGES[@]+"${EXTRA_APT_PACKAGES[@]}"})
if [ "$DEV" = 1 ]; then
  have clang-format || missing+=(clang-format)
  have cmake || missing+=(cmake)
  extras+=(${EXTRA_APT_PACKAGES_DEV[@]+"${EXTRA_APT_PACKAGES_DEV[@]}"})
fi
if [ "${#extras[@]}" -gt 0 ]; then
  if have dpkg-query; then
    for p in "${extras[@]}"; do deb_installed "$p" || missing+=("$p"); done
  else
    missing+=("${extras[@]}")
  fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    if have sudo; then
      if [ -t 0 ]; then SUDO=(sudo); else SUDO=(sudo -n); fi
    else
      SUDO=(none)
    fi
  fi
  if ! have apt-get || [ "${SUDO[*]}" = none ]; then
    die "missing system packages: ${missing[*]}. Install them (Debian/Ubuntu: apt-get install ${missing[*]}; macOS: brew install libwebsockets pkg-config clang-format) and re-run."
  fi
  log "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_log="$(mktemp "${TMPDIR:-/tmp}/node-lws-apt.XXXXXX")"
  if ! { ${SUDO[@]+"${SUDO[@]}"} apt-get update -qq &&
    ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    rm -f "$apt_log"
    die "apt-get install ${missing[*]} failed"
  fi
  rm -f "$apt_log"
  pkg-config --exists libwebsockets || die "libwebsockets still not found by pkg-config"
  did=1
fi

have node || die "node not found (Node.js >= 20 is required)"
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' ||
  die "Node.js >= 20 is required (found $(node -v))"

# Build against the running Node's own headers (e.g. /usr/include/node) so node-gyp never
# downloads them; an explicit npm `nodedir` setting wins.
GYP_ARGS=()
NODE_PREFIX="$(cd "$(dirname "$(readlink -f "$(command -v node)")")/.." && pwd)"
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$NODE_PREFIX/include/node/node_api.h" ]; then
  GYP_ARGS+=("--nodedir=$NODE_PREFIX")
fi

# ---- b) npm packages ------------------------------------------------------------------------
if [ ! -f package-lock.json ]; then
  log "no package-lock.json: npm install"
  npm install --no-audit --no-fund
  did=1
elif [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund
  did=1
fi

# ---- c) native addon ------------------------------------------------------------------------
ADDON=build/Release/node_lws.node
NODE_GYP=node_modules/.bin/node-gyp
[ -x "$NODE_GYP" ] || die "$NODE_GYP missing (npm ci did not install devDependencies?)"
need_native=0
if [ ! -f "$ADDON" ]; then
  need_native=1
elif [ -n "$(find native binding.gyp -newer "$ADDON" -print -quit 2>/dev/null)" ]; then
  need_native=1
fi
if [ "$need_native" = 1 ]; then
  # Re-configure when the gyp inputs changed (or never configured); otherwise an incremental
  # build. Output goes to a log that is shown in full on failure; compiler warnings are shown.
  gyp_cmd=rebuild
  if [ -f build/Makefile ] && [ -f build/config.gypi ] &&
    [ -z "$(find binding.gyp native/sources.txt -newer build/Makefile -print -quit 2>/dev/null)" ]; then
    gyp_cmd=build
  fi
  log "native addon out of date: node-gyp $gyp_cmd"
  gyp_log="$(mktemp "${TMPDIR:-/tmp}/node-lws-gyp.XXXXXX")"
  if ! "$NODE_GYP" "$gyp_cmd" ${GYP_ARGS[@]+"${GYP_ARGS[@]}"} --jobs="$(nproc 2>/dev/null || echo 2)" \
    >"$gyp_log" 2>&1; then
    cat "$gyp_log" >&2
    rm -f "$gyp_log"
    die "native build failed (node-gyp $gyp_cmd)"
  fi
  grep -A3 -E '(warning|note):' "$gyp_log" |
    grep -vE '^(gyp |make|  (CXX|CC|SOLINK_MODULE|LINK|COPY|TOUCH)\()' || true
  rm -f "$gyp_log"
  [ -f "$ADDON" ] || die "native build produced no $ADDON"
  touch "$ADDON" # make may leave it untouched when only non-source files changed
  did=1
fi

# ---- d) TypeScript --------------------------------------------------------------------------
if [ -d lib ]; then
  if [ ! -f dist/index.js ] ||
    [ -n "$(find lib tsconfig.json -newer dist/index.js -print -quit 2>/dev/null)" ]; then
    log "compiling TypeScript: tsc -p tsconfig.json"
    node_modules/.bin/tsc -p tsconfig.json || die "tsc failed"
    did=1
  fi
else
  log "warning: lib/ not present, skipping TypeScript build"
fi

if [ "$did" = 0 ]; then log "ok (everything up to date)"; else log "done"; fi
