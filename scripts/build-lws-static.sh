#!/usr/bin/env bash
# Build a static, position-independent libwebsockets 4.1.6 for the node-lws prebuilds.
#
#   bash scripts/build-lws-static.sh          # reuse build/lws-static when it is up to date
#   bash scripts/build-lws-static.sh --force  # rebuild from scratch
#
# Debian's libwebsockets.a and libev.a are not PIC, so they cannot be linked into a .node. This
# script gets lws and libev from Debian's own source packages (apt-get source, through a
# temporary deb-src list derived from the machine's apt sources; the system apt configuration is
# not touched), applies the Debian patches (dpkg-source -x), builds libev 4.33 with its own
# configure (static, -fPIC, hidden symbols) and lws with cmake: static only, -fPIC,
# -fvisibility=hidden, lws's libev event loop compiled in (not a plugin), and only the features
# node-lws uses (raw sockets / file descriptors, libev and poll loops, lws_sul, OpenSSL TLS
# server + client vhosts, lws_SHA1).
#
# Output (all under build/, which is gitignored; no lws or libev source is ever committed):
#   build/lws-src/                       apt work dir, extracted + patched sources, build dirs
#   build/lws-static/include/            lws headers (libwebsockets.h, lws_config.h, ...), ev.h
#   build/lws-static/lib/libwebsockets.a, libev.a
#                                        (no .so next to them, so -lwebsockets -lev pick the .a)
#   build/lws-static/pkgconfig/libwebsockets.pc
#       a pkg-config file for the static libs; scripts/prebuild.sh puts this directory first in
#       PKG_CONFIG_PATH so binding.gyp's `pkg-config --cflags/--libs libwebsockets` (unchanged)
#       compiles against these headers and links the .a files, with -Wl,--exclude-libs,ALL so no
#       lws or libev symbol is exported from the addon; scripts/libev-flags.cjs sees libev
#       compiled into this lws and adds no -lev of its own.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LWS_UPSTREAM_VERSION=4.1.6
LIBEV_UPSTREAM_VERSION=4.33
EV_CFLAGS="-O2 -fPIC -fvisibility=hidden -fno-strict-aliasing"
WORK="$ROOT/build/lws-src"
PREFIX="$ROOT/build/lws-static"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h | --help)
      sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-lws-static: unknown argument: $arg" >&2
      exit 2
      ;;
  esac
done

log() { echo "build-lws-static: $*"; }
die() {
  echo "build-lws-static: error: $*" >&2
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
JOBS="$(nproc 2>/dev/null || echo 2)"

# lws feature set. Anything node-lws does not use is off; changing this list triggers a rebuild
# (its hash is stored in build/lws-static/.stamp).
CMAKE_OPTS=(
  -DCMAKE_BUILD_TYPE=Release
  -DCMAKE_INSTALL_PREFIX="$PREFIX"
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  "-DCMAKE_C_FLAGS=-fPIC -fvisibility=hidden -O2"
  -DDISABLE_WERROR=ON
  -DLWS_WITH_STATIC=ON
  -DLWS_WITH_SHARED=OFF
  -DLWS_STATIC_PIC=ON
  -DLWS_LINK_TESTAPPS_DYNAMIC=OFF
  -DLWS_WITHOUT_TESTAPPS=ON
  -DLWS_WITHOUT_TEST_SERVER=ON
  -DLWS_WITHOUT_TEST_SERVER_EXTPOLL=ON
  -DLWS_WITHOUT_TEST_PING=ON
  -DLWS_WITHOUT_TEST_CLIENT=ON
  -DLWS_WITH_MINIMAL_EXAMPLES=OFF
  -DLWS_MAX_SMP=1
  -DLWS_IPV6=ON
  -DLWS_UNIX_SOCK=ON
  # TLS: OpenSSL (the system libssl/libcrypto, linked dynamically by the addon)
  -DLWS_WITH_SSL=ON
  -DLWS_WITH_MBEDTLS=OFF
  -DLWS_SSL_CLIENT_USE_OS_CA_CERTS=OFF
  # roles: raw sockets / raw files are what node-lws drives (it frames ws itself)
  -DLWS_ROLE_RAW_FILE=ON
  -DLWS_ROLE_RAW_PROXY=OFF
  -DLWS_ROLE_DBUS=OFF
  -DLWS_ROLE_MQTT=OFF
  -DLWS_WITH_HTTP2=OFF
  -DLWS_WITH_HTTP_PROXY=OFF
  -DLWS_WITH_HTTP_STREAM_COMPRESSION=OFF
  -DLWS_WITH_HTTP_BROTLI=OFF
  -DLWS_WITH_ZLIB=OFF
  -DLWS_WITH_BUNDLED_ZLIB=OFF
  -DLWS_WITHOUT_EXTENSIONS=ON
  -DLWS_WITH_ACCESS_LOG=OFF
  -DLWS_WITH_CGI=OFF
  -DLWS_WITH_SOCKS5=OFF
  -DLWS_WITH_PEER_LIMITS=OFF
  -DLWS_WITH_SERVER_STATUS=OFF
  -DLWS_WITH_LWSWS=OFF
  -DLWS_WITH_LWSAC=ON
  -DLWS_WITH_LEJP=OFF
  -DLWS_WITH_LEJP_CONF=OFF
  -DLWS_WITH_SQLITE3=OFF
  -DLWS_WITH_STRUCT_JSON=OFF
  -DLWS_WITH_STRUCT_SQLITE3=OFF
  -DLWS_WITH_FTS=OFF
  -DLWS_WITH_GENCRYPTO=OFF
  -DLWS_WITH_JOSE=OFF
  -DLWS_WITH_ACME=OFF
  -DLWS_WITH_SECURE_STREAMS=OFF
  -DLWS_WITH_SECURE_STREAMS_PROXY_API=OFF
  -DLWS_WITH_SYS_ASYNC_DNS=OFF
  -DLWS_WITH_SYS_NTPCLIENT=OFF
  -DLWS_WITH_SYS_DHCP_CLIENT=OFF
  -DLWS_WITH_DETAILED_LATENCY=OFF
  -DLWS_WITH_SPAWN=OFF
  -DLWS_WITH_FSMOUNT=OFF
  -DLWS_WITH_DIR=OFF
  -DLWS_WITH_THREADPOOL=OFF
  -DLWS_WITH_DISKCACHE=OFF
  -DLWS_WITH_RANGES=OFF
  -DLWS_WITH_ZIP_FOPS=OFF
  -DLWS_WITH_UDP=OFF
  -DLWS_WITH_EXTERNAL_POLL=OFF
  # event loop: libev compiled in (no plugin: nothing is dlopen'ed), against the static libev
  # built below; lws's poll() loop stays available (NODE_LWS_EVENT_LOOP=poll)
  -DLWS_WITH_LIBEV=ON
  -DLIBEV_FOUND=ON
  "-DLIBEV_INCLUDE_DIRS=$WORK/libev/include"
  "-DLIBEV_LIBRARIES=$WORK/libev/lib/libev.a"
  "-DLWS_LIBEV_INCLUDE_DIRS=$WORK/libev/include"
  "-DLWS_LIBEV_LIBRARIES=$WORK/libev/lib/libev.a"
  -DLWS_WITH_LIBUV=OFF
  -DLWS_WITH_LIBEVENT=OFF
  -DLWS_WITH_GLIB=OFF
  -DLWS_WITH_EVLIB_PLUGINS=OFF
  -DLWS_WITH_PLUGINS=OFF
  # no libcap: the addon must not need libcap.so
  -DLWS_HAVE_LIBCAP=OFF
)

STAMP="$PREFIX/.stamp"
want_stamp="lws $LWS_UPSTREAM_VERSION libev $LIBEV_UPSTREAM_VERSION $(printf '%s\n' "${CMAKE_OPTS[@]}" "$EV_CFLAGS" | sha256sum | cut -c1-16)"
if [ "$FORCE" = 0 ] && [ -f "$PREFIX/lib/libwebsockets.a" ] && [ -f "$PREFIX/lib/libev.a" ] &&
  [ -f "$PREFIX/include/libwebsockets.h" ] && [ -f "$PREFIX/include/ev.h" ] &&
  [ -f "$PREFIX/pkgconfig/libwebsockets.pc" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want_stamp" ]; then
  log "ok ($PREFIX is up to date)"
  exit 0
fi

# ---- tools ------------------------------------------------------------------------------------
missing=()
have cmake || missing+=(cmake)
have make || missing+=(make)
have gcc || missing+=(gcc)
have dpkg-source || missing+=(dpkg-dev)
have pkg-config || missing+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
have apt-get || die "apt-get not found: this script gets lws from Debian's source package"
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    have sudo || die "missing packages: ${missing[*]} (and no sudo)"
    SUDO=(sudo -n)
  fi
  log "installing ${missing[*]}"
  ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# ---- source package ---------------------------------------------------------------------------
# A deb-src stanza derived from the machine's own apt sources (first "deb" stanza / line whose
# suite has no "-updates"/"-security" suffix). Falls back to deb.debian.org + os-release codename.
derive_source() {
  local f uri="" suite="" signed=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822: print "URI SUITE SIGNED" for each stanza with Types containing deb
    read -r uri suite signed < <(awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && uris != "" && suites != "") {
          n = split(suites, s, " "); split(uris, u, " ")
          for (i = 1; i <= n; i++) if (s[i] !~ /-/) { print u[1], s[i], (signed == "" ? "-" : signed); found = 1; exit }
        }
        types = uris = suites = signed = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:"     { $1 = ""; types = substr($0, 2) }
      tolower($1) == "uris:"      { $1 = ""; uris = substr($0, 2) }
      tolower($1) == "suites:"    { $1 = ""; suites = substr($0, 2) }
      tolower($1) == "signed-by:" { $1 = ""; signed = substr($0, 2) }
      END { if (!found) flush() }
    ' "$f") || true
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      read -r uri suite < <(awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i+1) !~ /-/) { print $i, $(i+1); exit } }' "$f") || true
      [ -n "$uri" ] && break
    done
  fi
  if [ -z "$uri" ]; then
    uri=http://deb.debian.org/debian
    suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  fi
  if [ -z "$signed" ] || [ "$signed" = - ]; then signed=/usr/share/keyrings/debian-archive-keyring.gpg; fi
  SRC_URI="$uri"
  SRC_SUITE="$suite"
  SRC_SIGNED="$signed"
}

mkdir -p "$WORK"
# fetch_dsc PACKAGE UPSTREAM_VERSION: downloads Debian's source package (.dsc, orig tarball,
# debian tarball) into $WORK unless it is there already; sets DSC to the .dsc path.
apt_ready=0
fetch_dsc() {
  local pkg="$1" version="$2"
  DSC="$(ls "$WORK"/"$pkg"_"$version"-*.dsc 2>/dev/null | head -n1 || true)"
  [ -n "$DSC" ] && return 0
  apt_tmp="$WORK/apt"
  APT_OPTS=(
    -o Dir::Etc::SourceList=/dev/null
    -o Dir::Etc::SourceParts="$apt_tmp/sources.list.d"
    -o Dir::State::Lists="$apt_tmp/lists"
    -o Dir::Cache="$apt_tmp/cache"
    -o APT::Sandbox::User=root
    -q
  )
  if [ "$apt_ready" = 0 ]; then
    derive_source
    log "deb-src: $SRC_URI $SRC_SUITE main"
    rm -rf "$apt_tmp"
    mkdir -p "$apt_tmp/sources.list.d" "$apt_tmp/lists/partial" "$apt_tmp/cache/archives/partial"
    cat >"$apt_tmp/sources.list.d/src.sources" <<EOF
Types: deb-src
URIs: $SRC_URI
Suites: $SRC_SUITE
Components: main
Signed-By: $SRC_SIGNED
EOF
    apt-get "${APT_OPTS[@]}" update >"$apt_tmp/update.log" 2>&1 || {
      cat "$apt_tmp/update.log" >&2
      die "apt-get update (deb-src) failed"
    }
    apt_ready=1
  fi
  (cd "$WORK" && apt-get "${APT_OPTS[@]}" source --download-only "$pkg") >"$apt_tmp/source-$pkg.log" 2>&1 || {
    cat "$apt_tmp/source-$pkg.log" >&2
    die "apt-get source --download-only $pkg failed"
  }
  DSC="$(ls "$WORK"/"$pkg"_"$version"-*.dsc 2>/dev/null | head -n1 || true)"
  [ -n "$DSC" ] || die "the source package is not $pkg $version: $(ls "$WORK")"
}
# unpack DSC DIR: the orig tarball with the Debian patches applied (3.0 quilt). The .dsc's files
# were verified by apt (hashes from the signed Release); the .dsc signature itself is checked
# when the uploader's key is available, a missing key is only a warning.
unpack() {
  local dsc="$1" dir="$2" name
  name="$(basename "$dir")"
  rm -rf "$dir"
  dpkg-source --no-copy -x "$dsc" "$dir" >"$WORK/dpkg-source-$name.log" 2>&1 || {
    cat "$WORK/dpkg-source-$name.log" >&2
    die "dpkg-source -x $(basename "$dsc") failed"
  }
}

fetch_dsc libwebsockets "$LWS_UPSTREAM_VERSION"
dsc="$DSC"
fetch_dsc libev "$LIBEV_UPSTREAM_VERSION"
ev_dsc="$DSC"
if [ "$apt_ready" = 1 ]; then rm -rf "$apt_tmp"; fi
log "source packages: $(basename "$dsc"), $(basename "$ev_dsc")"

# ---- libev, static and PIC --------------------------------------------------------------------
# Debian's libev.a is not position-independent either (R_X86_64_PC32 against stderr), so
# libev is built here with its own configure: static only, -fPIC, hidden symbols. lws is built
# with its libev event loop compiled in (no plugin) against it, and the addon links both.
EV_SRC="$WORK/libev-src"
if [ "$FORCE" = 1 ] || [ ! -f "$EV_SRC/ev.c" ]; then unpack "$ev_dsc" "$EV_SRC"; fi
EV_BLD="$WORK/libev-build"
EV_PREFIX="$WORK/libev"
rm -rf "$EV_BLD" "$EV_PREFIX"
mkdir -p "$EV_BLD" "$EV_PREFIX/include" "$EV_PREFIX/lib"
start=$(date +%s)
log "libev: configure + make"
(cd "$EV_BLD" && "$EV_SRC/configure" --disable-shared --enable-static --with-pic \
  CFLAGS="$EV_CFLAGS") >"$WORK/libev-configure.log" 2>&1 || {
  cat "$WORK/libev-configure.log" >&2
  die "libev configure failed"
}
make -C "$EV_BLD" -j"$JOBS" >"$WORK/libev-make.log" 2>&1 || {
  tail -n 40 "$WORK/libev-make.log" >&2
  die "libev build failed (full log: $WORK/libev-make.log)"
}
ev_a="$(find "$EV_BLD" -name libev.a | head -n1)"
[ -n "$ev_a" ] || die "no libev.a produced"
cp "$EV_SRC/ev.h" "$EV_PREFIX/include/"
cp "$ev_a" "$EV_PREFIX/lib/libev.a"

SRC="$WORK/src"
if [ "$FORCE" = 1 ] || [ ! -f "$SRC/CMakeLists.txt" ]; then unpack "$dsc" "$SRC"; fi

# ---- build ------------------------------------------------------------------------------------
BLD="$WORK/build"
rm -rf "$BLD" "$PREFIX"
mkdir -p "$BLD"
log "cmake configure"
(cd "$BLD" && cmake "$SRC" "${CMAKE_OPTS[@]}") >"$WORK/cmake.log" 2>&1 || {
  cat "$WORK/cmake.log" >&2
  die "cmake configure failed"
}
log "building (make -j$JOBS)"
make -C "$BLD" -j"$JOBS" websockets >"$WORK/make.log" 2>&1 || {
  tail -n 60 "$WORK/make.log" >&2
  die "build failed (full log: $WORK/make.log)"
}
# Install only the library + headers (no cmake files pointing at the build tree).
mkdir -p "$PREFIX/lib" "$PREFIX/include" "$PREFIX/pkgconfig"
a="$(find "$BLD" -name libwebsockets.a | head -n1)"
[ -n "$a" ] || die "no libwebsockets.a produced"
cp "$a" "$PREFIX/lib/libwebsockets.a"
cp "$EV_PREFIX/lib/libev.a" "$PREFIX/lib/libev.a"
cp -r "$SRC/include/." "$PREFIX/include/"
cp "$EV_PREFIX/include/ev.h" "$PREFIX/include/ev.h"
cp "$BLD/lws_config.h" "$PREFIX/include/lws_config.h" 2>/dev/null ||
  cp "$(find "$BLD" -name lws_config.h | head -n1)" "$PREFIX/include/lws_config.h"
# Every object must be position-independent (no absolute 32-bit relocations).
for lib in libwebsockets.a libev.a; do
  if readelf -r "$PREFIX/lib/$lib" 2>/dev/null | grep 'R_X86_64_32S\? ' >/dev/null; then
    die "$lib contains non-PIC relocations"
  fi
done
grep -q '^#define LWS_WITH_LIBEV' "$PREFIX/include/lws_config.h" || die "lws was built without libev"
if grep -q '^#define LWS_WITH_EVLIB_PLUGINS' "$PREFIX/include/lws_config.h"; then
  die "lws was built with event-lib plugins (libev must be compiled in)"
fi
cat >"$PREFIX/pkgconfig/libwebsockets.pc" <<EOF
# Generated by scripts/build-lws-static.sh: static, PIC libwebsockets for node-lws prebuilds.
prefix=$PREFIX
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: libwebsockets
Description: libwebsockets $LWS_UPSTREAM_VERSION with libev $LIBEV_UPSTREAM_VERSION compiled in (static, PIC, hidden symbols)
Version: $LWS_UPSTREAM_VERSION
Cflags: -I\${includedir}
Libs: -Wl,--exclude-libs,ALL -L\${libdir} -lwebsockets -lev
EOF
echo "$want_stamp" >"$STAMP"
log "done in $(($(date +%s) - start)) s: $PREFIX/lib/libwebsockets.a ($(du -k "$PREFIX/lib/libwebsockets.a" | cut -f1) KiB), libev.a ($(du -k "$PREFIX/lib/libev.a" | cut -f1) KiB)"
