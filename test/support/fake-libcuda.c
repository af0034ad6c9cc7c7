/* A stand-in libcuda.so.1 over host memory, to test Kiln's koffi binding (src/node/cuda-driver.ts) without a GPU:
 * device pointers are malloc'd host addresses; the module's one kernel "add_one" computes
 * out[i] = in[i] + 1 for i < grid.x * block.x, reading its two .u64 pointer parameters through kernelParams the way
 * the driver does. Built by test/cuda-runtime.test.ts with the system C compiler. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
static int inited, retained, live_allocs, launches;
static uint64_t last_params[8];
static unsigned last_dims[7];
int cuInit(unsigned flags) { (void)flags; inited = 1; return 0; }
int cuGetErrorName(int e, const char **s) { *s = e == 500 ? "CUDA_ERROR_NOT_FOUND" : e == 3 ? "CUDA_ERROR_NOT_INITIALIZED" : "CUDA_ERROR_UNKNOWN"; return 0; }
int cuGetErrorString(int e, const char **s) { *s = e == 500 ? "named symbol not found" : "other"; return 0; }
int cuDeviceGetCount(int *n) { if (!inited) return 3; *n = 1; return 0; }
int cuDeviceGet(int *d, int ordinal) { *d = ordinal; return 0; }
int cuDeviceGetName(char *name, int len, int d) { (void)d; strncpy(name, "Fake GPU", len); return 0; }
int cuDeviceGetAttribute(int *v, int attr, int d) { (void)d; *v = attr == 75 ? 8 : attr == 76 ? 6 : 0; return 0; }
int cuDeviceTotalMem_v2(size_t *b, int d) { (void)d; *b = (size_t)1 << 34; return 0; }
int cuDevicePrimaryCtxRetain(void **ctx, int d) { (void)d; retained++; *ctx = (void *)0x1234; return 0; }
int cuDevicePrimaryCtxRelease_v2(int d) { (void)d; retained--; return 0; }
int cuCtxSetCurrent(void *ctx) { return ctx == (void *)0x1234 ? 0 : 201; }
int cuModuleLoadData(void **m, const char *image) { if (!strstr(image, ".entry add_one")) return 218; *m = (void *)0x5678; return 0; }
int cuModuleGetFunction(void **f, void *m, const char *name) { if (m != (void *)0x5678) return 400; if (strcmp(name, "add_one")) return 500; *f = (void *)0x9abc; return 0; }
int cuModuleUnload(void *m) { return m == (void *)0x5678 ? 0 : 400; }
int cuMemAlloc_v2(uint64_t *p, size_t n) { *p = (uint64_t)(uintptr_t)malloc(n); live_allocs++; return 0; }
int cuMemFree_v2(uint64_t p) { free((void *)(uintptr_t)p); live_allocs--; return 0; }
int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t n) { memcpy((void *)(uintptr_t)dst, src, n); return 0; }
int cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t n) { memcpy(dst, (void *)(uintptr_t)src, n); return 0; }
int cuStreamCreate(void **s, unsigned flags) { (void)flags; *s = (void *)0xdef0; return 0; }
int cuStreamDestroy_v2(void *s) { return s == (void *)0xdef0 ? 0 : 400; }
int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared, void *s, void **params, void **extra) {
  if (f != (void *)0x9abc || s != (void *)0xdef0 || extra) return 400;
  unsigned d[7] = {gx, gy, gz, bx, by, bz, shared};
  memcpy(last_dims, d, sizeof d);
  for (int i = 0; i < 2; i++) last_params[i] = *(uint64_t *)params[i];
  float *in = (float *)(uintptr_t)last_params[0], *out = (float *)(uintptr_t)last_params[1];
  for (unsigned i = 0; i < gx * bx; i++) out[i] = in[i] + 1.0f;
  launches++;
  return 0;
}
int cuStreamSynchronize(void *s) { return s == (void *)0xdef0 ? 0 : 400; }
/* events: handles 0xe0 + n; the elapsed time between two records is 0.25 ms per launch enqueued between them */
static int live_events, recorded_launches[2];
int cuEventCreate(void **e, unsigned flags) { (void)flags; *e = (void *)(uintptr_t)(0xe0 + live_events++); return 0; }
int cuEventRecord(void *e, void *s) {
  uintptr_t i = (uintptr_t)e - 0xe0;
  if (i > 1 || s != (void *)0xdef0) return 400;
  recorded_launches[i] = launches;
  return 0;
}
int cuEventSynchronize(void *e) { return (uintptr_t)e - 0xe0 <= 1 ? 0 : 400; }
int cuEventElapsedTime(float *ms, void *a, void *b) { (void)a; (void)b; *ms = 0.25f * (float)(recorded_launches[1] - recorded_launches[0]); return 0; }
int cuEventDestroy_v2(void *e) { (void)e; live_events--; return 0; }
/* for the test */
int fake_events(void) { return live_events; }
int fake_state(int *out) { out[0] = retained; out[1] = live_allocs; out[2] = launches; return 0; }
int fake_last_launch(uint64_t *params, unsigned *dims) { memcpy(params, last_params, 16); memcpy(dims, last_dims, sizeof last_dims); return 0; }
