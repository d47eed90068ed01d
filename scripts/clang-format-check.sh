#!/usr/bin/env bash
# Check (default) or fix (--fix) the formatting of the C/C++ sources with clang-format,
# using the repository's .clang-format (Google style, 100 columns).
#   bash scripts/clang-format-check.sh        # exit 1 if any file would be reformatted
#   bash scripts/clang-format-check.sh --fix  # rewrite files in place
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

mode=check
case "${1:-}" in
  --fix) mode=fix ;;
  "") ;;
  *) echo "usage: $0 [--fix]" >&2; exit 2 ;;
esac

CLANG_FORMAT="${CLANG_FORMAT:-clang-format}"
if ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
  echo "clang-format-check: '$CLANG_FORMAT' not found. Install it: apt-get install clang-format (Debian/Ubuntu), brew install clang-format (macOS), or run: bash scripts/bootstrap.sh --dev" >&2
  exit 1
fi

shopt -s nullglob
files=(native/*.cc native/*.h test/native/*.cc fuzz/*.cc bench/*.c bench/*.cc bench/*.cpp bench/*.h)
shopt -u nullglob

if [ "${#files[@]}" -eq 0 ]; then
  echo "clang-format-check: no C/C++ files to check"
  exit 0
fi

if [ "$mode" = fix ]; then
  "$CLANG_FORMAT" -i --style=file "${files[@]}"
  echo "clang-format-check: formatted ${#files[@]} file(s)"
  exit 0
fi

if ! "$CLANG_FORMAT" --dry-run -Werror --style=file "${files[@]}"; then
  echo "clang-format-check: formatting differs from .clang-format; run 'npm run format'" >&2
  exit 1
fi
echo "clang-format-check: ${#files[@]} file(s) OK"
