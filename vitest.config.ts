import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    // every test verifies the graph and loop IR after each pass (src/util/debug.ts)
    env: { KILN_DEBUG: 'verify' },
    maxWorkers: 2,
  },
});
