#!/usr/bin/env bash
# System packages the test suite needs beyond Node and python3 (scripts/fixtures.sh installs python3-venv itself),
# installed from Debian's packages when missing: for WebGPU and browser tests Debian's chromium (it ships SwiftShader's Vulkan driver, /usr/lib/chromium/vk_swiftshader_icd.json, and the headless browser)
# plus libvulkan1 (the Vulkan loader Dawn opens); for target 'native' LLVM's opt and llc (Debian's llvm, any llvm-N from
# 14 on) and a linker driver (gcc); for the C API of native artifacts (test/c-api.test.ts: scripts/build-c-runtime.sh,
# examples/c) the jansson and OpenSSL headers (libjansson-dev, libssl-dev) and cmake. Without root the missing ones are
# named, and the tests that need them report themselves skipped or failed.
set -euo pipefail

missing=()
[ -f /usr/lib/chromium/vk_swiftshader_icd.json ] || missing+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 ' || missing+=(libvulkan1)
# the native backend finds the newest /usr/lib/llvm-N/bin with opt and llc (src/codegen/native/toolchain.ts)
ls /usr/lib/llvm-*/bin/opt >/dev/null 2>&1 && ls /usr/lib/llvm-*/bin/llc >/dev/null 2>&1 || missing+=(llvm)
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -f /usr/include/jansson.h ] || missing+=(libjansson-dev)
[ -f /usr/include/openssl/evp.h ] || missing+=(libssl-dev)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "test-prerequisites: missing Debian packages: ${missing[*]} (sudo apt-get install --no-install-recommends ${missing[*]})" >&2
  exit 0
fi
echo "test-prerequisites: apt-get install ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
