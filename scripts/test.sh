#!/usr/bin/env bash
# The test command (npm test): the formatter and linter (npm run lint), fixtures, build, every vitest suite; ends
# with the line "N passed, N failed".
# --quick (npm run test:quick): build and the fast suites only (QUICK_FILES: no fixtures, no tuning runs, no model
# zoo, no conformance), a few minutes for day-to-day work; the same closing line.
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK_FILES="test/lowering.test.ts test/passes.test.ts test/errors.test.ts test/runtime-validation.test.ts
  test/compile-validation.test.ts test/pooling.test.ts test/runtime-purity.test.ts test/profile.test.ts test/threads.test.ts
  test/wgsl.test.ts test/winograd.test.ts test/cli.test.ts test/fuzz.test.ts test/loop-passes.test.ts
  test/constant-folding.test.ts test/serve-batcher.test.ts test/counted-sizes.test.ts"
quick_files=()
if [ "${1:-}" = "--quick" ]; then
  shift
  for f in $QUICK_FILES; do [ -f "$f" ] && quick_files+=("$f"); done
fi
npm run lint || { echo "lint failed: npm run format fixes formatting; the rest the message names" >&2; exit 1; }
bash scripts/test-prerequisites.sh || exit 1
if [ ${#quick_files[@]} -eq 0 ]; then bash scripts/fixtures.sh || exit 1; fi
npm run build || exit 1
mkdir -p .cache
vitest_status=0
npx vitest run --reporter=default --reporter=json --outputFile=.cache/vitest-report.json "${quick_files[@]}" "$@" || vitest_status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(".cache/vitest-report.json", "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' || true
exit "$vitest_status"
