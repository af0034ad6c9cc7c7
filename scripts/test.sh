#!/usr/bin/env bash
# The test command (npm test): fixtures, build, every vitest suite; ends with the line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-prerequisites.sh || exit 1
bash scripts/fixtures.sh || exit 1
npm run build || exit 1
mkdir -p .cache
vitest_status=0
npx vitest run --reporter=default --reporter=json --outputFile=.cache/vitest-report.json "$@" || vitest_status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(".cache/vitest-report.json", "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' || true
exit "$vitest_status"
