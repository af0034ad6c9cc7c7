#!/usr/bin/env bash
# System packages the test suite needs beyond Node and python3 (scripts/fixtures.sh installs python3-venv itself),
# installed from Debian's packages when missing: for WebGPU and browser tests Debian's chromium (it ships SwiftShader's Vulkan driver, /usr/lib/chromium/vk_swiftshader_icd.json, and the headless browser)
# plus libvulkan1 (the Vulkan loader Dawn opens). Without root the missing ones are named, and the tests that need
# them report themselves skipped or failed.
set -euo pipefail

missing=()
[ -f /usr/lib/chromium/vk_swiftshader_icd.json ] || missing+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 ' || missing+=(libvulkan1)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "test-prerequisites: missing Debian packages: ${missing[*]} (sudo apt-get install --no-install-recommends ${missing[*]})" >&2
  exit 0
fi
echo "test-prerequisites: apt-get install ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
