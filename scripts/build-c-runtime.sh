#!/usr/bin/env bash
# Builds Kiln's C runtime (c/src/kiln.c, the C API of native artifacts: c/include/kiln.h) with the system C compiler:
#   OUT_DIR/lib/libkiln.so   (links libjansson, libcrypto, libdl)
#   OUT_DIR/lib/libkiln.a    (link it with -ljansson -lcrypto -ldl)
#   OUT_DIR/include/kiln.h
# Usage: scripts/build-c-runtime.sh [OUT_DIR]   (default build/c). CC and CFLAGS are honoured (default cc, -O2).
# Needs Debian's libjansson-dev and libssl-dev (scripts/test-prerequisites.sh names them).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/build/c}"
cc="${CC:-cc}"
cflags="${CFLAGS:--O2}"

missing=()
command -v "$cc" >/dev/null 2>&1 || missing+=("a C compiler ($cc: apt-get install gcc)")
# the headers where the compiler finds them (any include path, not only /usr/include)
has_header() { printf '#include <%s>\n' "$1" | "$cc" -E -x c - >/dev/null 2>&1; }
if command -v "$cc" >/dev/null 2>&1; then
  has_header jansson.h || missing+=("jansson.h (apt-get install libjansson-dev)")
  has_header openssl/evp.h || missing+=("openssl/evp.h (apt-get install libssl-dev)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  printf 'build-c-runtime: missing %s\n' "${missing[@]}" >&2
  exit 1
fi

mkdir -p "$out/lib" "$out/include"
obj="$(mktemp -d)"
trap 'rm -rf "$obj"' EXIT
# shellcheck disable=SC2086 # CFLAGS is a list of flags
"$cc" -std=c11 -Wall -Wextra $cflags -fPIC -fvisibility=hidden -I"$root/c/include" \
  -c "$root/c/src/kiln.c" -o "$obj/kiln.o"
# shellcheck disable=SC2086
"$cc" -shared $cflags -Wl,-soname,libkiln.so -o "$out/lib/libkiln.so" "$obj/kiln.o" -ljansson -lcrypto -ldl
rm -f "$out/lib/libkiln.a"
ar rcs "$out/lib/libkiln.a" "$obj/kiln.o"
cp "$root/c/include/kiln.h" "$out/include/kiln.h"
echo "build-c-runtime: $out/lib/libkiln.so, $out/lib/libkiln.a, $out/include/kiln.h"
