/*
 * kiln.c: the C runtime of Kiln's native artifacts (see include/kiln.h).
 *
 * What it does is what the Node runtime does for target 'native' (src/runtime/artifact.ts, header-check.ts,
 * native.ts, src/node/native-library.ts), without Node:
 *   - the artifact: a 48-byte prefix ("KILN", u32 LE format version 1, u32 header length, u32 reserved, SHA-256 of
 *     everything from byte 48 on), the header JSON (parsed with jansson), then sections at the offsets the header
 *     names (from the start of the file);
 *   - the checks: prefix, checksum (OpenSSL's libcrypto), then every header field this runtime reads, so that an
 *     edited-and-rehashed file is refused with the field that is wrong instead of reaching memcpy or the kernels;
 *   - one memory of header.memoryBytes (zeroed) holding the weights at weightsAt, the inputs and outputs at their
 *     offsets and the intermediates; the library's entry `kiln_run(void *memory, int threads)` (older artifacts:
 *     `kiln_run(void *memory)`) runs every kernel on it;
 *   - the library is loaded from an anonymous file (memfd_create), or where that fails from a private temporary
 *     directory (mkdtemp) that is removed as soon as it is loaded. libgomp, which threaded libraries link, is pinned
 *     (RTLD_NODELETE): its idle team threads outlive a run and would crash if it were unloaded with the last model.
 */
#define _GNU_SOURCE
#include "kiln.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX_BYTES 48
#define FORMAT_VERSION 1u
/* Number.MAX_SAFE_INTEGER: the largest integer the TypeScript runtime accepts in a header */
#define MAX_SAFE ((int64_t)9007199254740991LL)

static const char DAMAGED_HINT[] = "recompile the model with kiln compile; do not edit or truncate .kiln files";
static const char NATIVE_HINT[] = "compile the model with target 'native' (kiln compile MODEL.onnx --target native)";

/* ------------------------------------------------------------------------------------------------------------ */
/* errors */

static _Thread_local char last_error[2048];

/* "[CODE] message. hint" (as KilnError writes it) into the calling thread's last error. */
__attribute__((format(printf, 3, 4))) static void fail(const char *code, const char *hint, const char *fmt, ...) {
  int n = snprintf(last_error, sizeof last_error, "[%s] ", code);
  if (n < 0 || (size_t)n >= sizeof last_error) return;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(last_error + n, sizeof last_error - (size_t)n, fmt, ap);
  va_end(ap);
  if (m < 0) return;
  n += m;
  if (hint && (size_t)n < sizeof last_error) snprintf(last_error + n, sizeof last_error - (size_t)n, ". %s", hint);
}

#define damaged(...) fail("E_ARTIFACT", DAMAGED_HINT, "artifact is damaged: " __VA_ARGS__)

const char *kiln_last_error(void) { return last_error; }

/* ------------------------------------------------------------------------------------------------------------ */
/* dtypes */

static const struct {
  const char *name;
  size_t bytes;
} DTYPES[] = {
    {"float32", 4},      {"float64", 8},    {"float16", 2},        {"bfloat16", 2}, {"float8e4m3fn", 1},
    {"float8e4m3fnuz", 1}, {"float8e5m2", 1}, {"float8e5m2fnuz", 1}, {"int8", 1},     {"uint8", 1},
    {"int16", 2},        {"uint16", 2},     {"int32", 4},          {"uint32", 4},   {"int64", 8},
    {"uint64", 8},       {"bool", 1},
};
#define DTYPE_COUNT (sizeof DTYPES / sizeof DTYPES[0])

/* ------------------------------------------------------------------------------------------------------------ */
/* the model */

typedef struct binding {
  kiln_tensor_info info; /* first: kiln_input returns its address */
  int64_t *shape;
  size_t offset;
} binding;

struct kiln_model {
  json_t *header; /* owns the strings the bindings point to */
  binding *inputs, *outputs;
  size_t n_inputs, n_outputs;
  uint8_t *memory;
  size_t mapped_bytes;
  void *library;
  void (*entry_threads)(void *, int);
  void (*entry)(void *);
  int threads;
  const char *cpu;
  atomic_flag running;
};

/* ------------------------------------------------------------------------------------------------------------ */
/* header fields */

/* A short rendering of a JSON value for messages, as header-check.ts's `shown`. */
static const char *shown(const json_t *v, char *buf, size_t n) {
  if (!v) return "missing";
  switch (json_typeof(v)) {
  case JSON_STRING: snprintf(buf, n, "'%.40s'", json_string_value(v)); return buf;
  case JSON_INTEGER: snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); return buf;
  case JSON_REAL: snprintf(buf, n, "%g", json_real_value(v)); return buf;
  case JSON_ARRAY: return "an array";
  case JSON_OBJECT: return "an object";
  case JSON_TRUE: return "true";
  case JSON_FALSE: return "false";
  default: return "null";
  }
}

static bool want_object(const json_t *v, const char *path) {
  char b[64];
  if (json_is_object(v)) return true;
  damaged("%s is %s, not an object", path, shown(v, b, sizeof b));
  return false;
}

static bool want_array(const json_t *v, const char *path) {
  char b[64];
  if (json_is_array(v)) return true;
  damaged("%s is %s, not an array", path, shown(v, b, sizeof b));
  return false;
}

/* A non-empty string. */
static const char *want_name(const json_t *v, const char *path) {
  char b[64];
  if (json_is_string(v) && json_string_length(v) > 0) return json_string_value(v);
  damaged("%s is %s, not a name", path, shown(v, b, sizeof b));
  return NULL;
}

/* A non-negative integer, at most `max` (described as `what` when given). */
static bool want_uint(const json_t *v, const char *path, int64_t max, const char *what, int64_t *out) {
  char b[64];
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_SAFE) {
    damaged("%s is %s, not a non-negative integer", path, shown(v, b, sizeof b));
    return false;
  }
  int64_t x = (int64_t)json_integer_value(v);
  if (x > max) {
    if (what) damaged("%s is %" PRId64 ", past %s", path, x, what);
    else damaged("%s is %" PRId64 ", past %" PRId64, path, x, max);
    return false;
  }
  *out = x;
  return true;
}

/* A section: inside the file, after the header. */
static bool want_section(const json_t *v, const char *path, size_t body_start, size_t file_bytes, int64_t *offset,
                         int64_t *length) {
  char p[96];
  if (!want_object(v, path)) return false;
  snprintf(p, sizeof p, "%s.offset", path);
  if (!want_uint(json_object_get(v, "offset"), p, MAX_SAFE, NULL, offset)) return false;
  snprintf(p, sizeof p, "%s.length", path);
  if (!want_uint(json_object_get(v, "length"), p, MAX_SAFE, NULL, length)) return false;
  if ((uint64_t)*offset < body_start) {
    damaged("%s.offset %" PRId64 " lies inside the header (which ends at %zu)", path, *offset, body_start);
    return false;
  }
  if ((uint64_t)(*offset + *length) > file_bytes) {
    damaged("%s [%" PRId64 ", %" PRId64 ") lies outside the file of %zu bytes", path, *offset, *offset + *length,
            file_bytes);
    return false;
  }
  return true;
}

/* One input or output: name (unique in its list), dtype, shape, offset inside memory at a multiple of its element. */
static bool want_binding(const json_t *v, const char *list, size_t i, int64_t memory_bytes, binding *all) {
  binding *out = all + i;
  char p[64], q[96], b[64];
  snprintf(p, sizeof p, "%s[%zu]", list, i);
  if (!want_object(v, p)) return false;
  snprintf(q, sizeof q, "%s.name", p);
  const char *name = want_name(json_object_get(v, "name"), q);
  if (!name) return false;
  for (size_t j = 0; j < i; j++)
    if (strcmp(all[j].info.name, name) == 0) {
      damaged("%s '%.80s' appears twice", q, name);
      return false;
    }
  if (json_object_get(v, "dims")) {
    fail("E_UNSUPPORTED", "compile the model with fixed shapes (kiln compile --dim NAME=VALUE for each run-time size)",
         "%s ('%.80s') has run-time sizes, which are not supported by the C API yet", p, name);
    return false;
  }
  const json_t *dt = json_object_get(v, "dtype");
  size_t elem = 0;
  const char *dtype = json_is_string(dt) ? json_string_value(dt) : "";
  for (size_t k = 0; k < DTYPE_COUNT; k++)
    if (strcmp(dtype, DTYPES[k].name) == 0) elem = DTYPES[k].bytes;
  if (!elem) {
    damaged("%s.dtype is %s, not a dtype (float32, float64, float16, bfloat16, float8e4m3fn, float8e4m3fnuz, "
            "float8e5m2, float8e5m2fnuz, int8, uint8, int16, uint16, int32, uint32, int64, uint64, bool)",
            p, shown(dt, b, sizeof b));
    return false;
  }
  const json_t *shape = json_object_get(v, "shape");
  snprintf(q, sizeof q, "%s.shape", p);
  if (!want_array(shape, q)) return false;
  size_t rank = json_array_size(shape);
  out->shape = calloc(rank ? rank : 1, sizeof *out->shape);
  if (!out->shape) {
    fail("E_SHAPE", "free memory", "out of memory reading the header");
    return false;
  }
  /* element count, in the range of a safe integer (a zero dim makes it 0 whatever the others are) */
  uint64_t count = 1;
  bool zero = false, over = false;
  for (size_t d = 0; d < rank; d++) {
    int64_t x;
    snprintf(q, sizeof q, "%s.shape[%zu]", p, d);
    if (!want_uint(json_array_get(shape, d), q, MAX_SAFE, NULL, &x)) return false;
    out->shape[d] = x;
    if (x == 0) zero = true;
    else if (!over && count > (uint64_t)MAX_SAFE / (uint64_t)x) over = true;
    else if (!over) count *= (uint64_t)x;
  }
  if (zero) count = 0;
  else if (over || count > (uint64_t)MAX_SAFE / elem) {
    damaged("%s.shape has more elements than memory can hold", p);
    return false;
  }
  int64_t offset;
  snprintf(q, sizeof q, "%s.offset", p);
  if (!want_uint(json_object_get(v, "offset"), q, MAX_SAFE, NULL, &offset)) return false;
  if ((uint64_t)offset % elem) {
    damaged("%s %" PRId64 " is not a multiple of %zu, the size of %s", q, offset, elem, dtype);
    return false;
  }
  uint64_t bytes = count * elem;
  if ((uint64_t)offset + bytes > (uint64_t)memory_bytes) {
    damaged("%s ('%.80s', %" PRIu64 " bytes at offset %" PRId64 ") lies outside memoryBytes %" PRId64, p, name, bytes,
            offset, memory_bytes);
    return false;
  }
  out->info.name = name;
  out->info.dtype = dtype;
  out->info.element_size = elem;
  out->info.rank = rank;
  out->info.shape = out->shape;
  out->info.element_count = (size_t)count;
  out->info.byte_size = (size_t)bytes;
  out->offset = (size_t)offset;
  return true;
}

static bool want_bindings(const json_t *list, const char *path, int64_t memory_bytes, binding **out, size_t *n) {
  if (!want_array(list, path)) return false;
  *n = json_array_size(list);
  *out = calloc(*n ? *n : 1, sizeof **out);
  if (!*out) {
    fail("E_SHAPE", "free memory", "out of memory reading the header");
    return false;
  }
  for (size_t i = 0; i < *n; i++)
    if (!want_binding(json_array_get(list, i), path, i, memory_bytes, *out)) return false;
  return true;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* the machine */

/* The running OS and CPU architecture as an LLVM triple names them ("x86_64", "linux"). */
static const char *host_arch(void) {
#if defined(__x86_64__)
  return "x86_64";
#elif defined(__aarch64__)
  return "aarch64";
#else
  return "unknown";
#endif
}
static const char *host_os(void) {
#if defined(__linux__)
  return "linux";
#else
  return "unknown";
#endif
}

/* The `flags` line of the first processor in /proc/cpuinfo (malloc'ed, the text after ':'), or NULL. */
static char *cpu_flags(void) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return NULL;
  char *line = NULL, *found = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) >= 0) {
    if (strncmp(line, "flags", 5) != 0) continue;
    char *s = line + 5;
    while (*s == ' ' || *s == '\t') s++;
    if (*s != ':') continue;
    found = strdup(s + 1);
    break;
  }
  free(line);
  fclose(f);
  return found;
}

static bool has_flag(const char *flags, const char *name) {
  size_t n = strlen(name);
  for (const char *s = flags; *s;) {
    while (*s == ' ' || *s == '\t' || *s == '\n') s++;
    const char *e = s;
    while (*e && *e != ' ' && *e != '\t' && *e != '\n') e++;
    if ((size_t)(e - s) == n && strncmp(s, name, n) == 0) return true;
    s = e;
  }
  return false;
}

/* The native code runs here: its platform, then the CPU features it needs. */
static bool check_machine(const json_t *native, const char *triple, const char *cpu) {
  char arch[64] = "", os[64] = "";
  const char *dash1 = strchr(triple, '-'), *dash2 = dash1 ? strchr(dash1 + 1, '-') : NULL;
  if (dash1) snprintf(arch, sizeof arch, "%.*s", (int)(dash1 - triple), triple);
  if (dash2) snprintf(os, sizeof os, "%.*s", (int)strcspn(dash2 + 1, "-"), dash2 + 1);
  if (strcmp(arch, host_arch()) != 0 || strcmp(os, host_os()) != 0) {
    fail("E_UNSUPPORTED", "compile the model on this platform, or run the artifact's WebAssembly from Node",
         "the native code is for %s-%s, this machine is %s-%s", arch, os, host_arch(), host_os());
    return false;
  }
  const json_t *features = json_object_get(native, "features");
  if (!want_array(features, "native.features")) return false;
  char *flags = cpu_flags();
  if (!flags) {
    fail("E_UNSUPPORTED", "run it where /proc/cpuinfo is readable",
         "this machine's CPU features cannot be read from /proc/cpuinfo (the code needs %s)", cpu);
    return false;
  }
  char missing[1024] = "";
  size_t used = 0;
  for (size_t i = 0; i < json_array_size(features); i++) {
    char p[64];
    snprintf(p, sizeof p, "native.features[%zu]", i);
    const char *f = want_name(json_array_get(features, i), p);
    if (!f) {
      free(flags);
      return false;
    }
    if (has_flag(flags, f) || used >= sizeof missing) continue;
    int n = snprintf(missing + used, sizeof missing - used, "%s%s", used ? ", " : "", f);
    used = n < 0 ? sizeof missing : used + (size_t)n;
  }
  free(flags);
  if (missing[0]) {
    fail("E_UNSUPPORTED",
         "compile the model for this machine (kiln compile --target native --cpu native, or a lower --cpu level), or "
         "run it on a CPU with these features",
         "the native code needs CPU level %s; this CPU lacks %s", cpu, missing);
    return false;
  }
  return true;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* the library */

static atomic_flag openmp_pinned = ATOMIC_FLAG_INIT;

/* Keeps libgomp loaded for the life of the process (see the top of the file). */
static void pin_openmp(void) {
  if (atomic_flag_test_and_set(&openmp_pinned)) return;
  /* not there: a library that needs it fails to load and says so; the handle is kept on purpose */
  (void)dlopen("libgomp.so.1", RTLD_NOW | RTLD_NODELETE);
}

static bool write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

/* dlopen of the library's bytes; NULL with `why` (a dlerror or errno text) on failure. */
static void *open_library(const uint8_t *lib, size_t n, char *why, size_t why_n) {
  snprintf(why, why_n, "no way to write it to a file");
  /* an anonymous file: nothing to clean up, even if the process dies */
  int fd = memfd_create("kiln-model", MFD_CLOEXEC);
  if (fd >= 0) {
    void *h = NULL;
    if (write_all(fd, lib, n)) {
      char path[64];
      snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
      h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
      if (!h) snprintf(why, why_n, "%s", dlerror());
    } else {
      snprintf(why, why_n, "writing it to memory: %s", strerror(errno));
    }
    close(fd);
    if (h) return h;
  }
  /* else a private temporary directory, removed once the library is loaded (its mapping outlives the file) */
  const char *tmp = getenv("TMPDIR");
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/kiln-native-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) {
    if (fd < 0) snprintf(why, why_n, "creating a temporary directory in %s: %s", tmp && *tmp ? tmp : "/tmp",
                         strerror(errno));
    return NULL;
  }
  snprintf(path, sizeof path, "%s/model.so", dir);
  void *h = NULL;
  int f = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (f >= 0) {
    bool ok = write_all(f, lib, n);
    int saved = errno;
    if (close(f) != 0) ok = false;
    if (ok) {
      h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
      if (!h) snprintf(why, why_n, "%s", dlerror());
    } else {
      snprintf(why, why_n, "writing %.400s: %s", path, strerror(saved));
    }
    unlink(path);
  } else {
    snprintf(why, why_n, "creating %.400s: %s", path, strerror(errno));
  }
  rmdir(dir);
  return h;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* loading */

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void release(kiln_model *m) {
  if (!m) return;
  if (m->library) dlclose(m->library);
  if (m->memory) munmap(m->memory, m->mapped_bytes);
  for (size_t i = 0; m->inputs && i < m->n_inputs; i++) free(m->inputs[i].shape);
  for (size_t i = 0; m->outputs && i < m->n_outputs; i++) free(m->outputs[i].shape);
  free(m->inputs);
  free(m->outputs);
  json_decref(m->header);
  free(m);
}

static kiln_model *load(const uint8_t *bytes, size_t size) {
  static const uint8_t MAGIC[4] = {'K', 'I', 'L', 'N'};
  if (size < 4 || memcmp(bytes, MAGIC, 4) != 0) {
    fail("E_ARTIFACT", "pass a file written by kiln compile", "not a Kiln artifact (bad magic number)");
    return NULL;
  }
  if (size < PREFIX_BYTES) {
    damaged("truncated prefix (%zu bytes, the prefix has %d)", size, PREFIX_BYTES);
    return NULL;
  }
  uint32_t version = le32(bytes + 4);
  if (version != FORMAT_VERSION) {
    fail("E_ARTIFACT", "recompile the model with the same Kiln version as the runtime",
         "artifact format version %u, this runtime reads version %u", version, FORMAT_VERSION);
    return NULL;
  }
  size_t header_len = le32(bytes + 8);
  if (header_len > size - PREFIX_BYTES) {
    damaged("truncated header");
    return NULL;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (!EVP_Digest(bytes + PREFIX_BYTES, size - PREFIX_BYTES, digest, &digest_len, EVP_sha256(), NULL) ||
      digest_len != 32) {
    fail("E_UNSUPPORTED", "check the OpenSSL installation (libcrypto)", "SHA-256 is not available from libcrypto");
    return NULL;
  }
  if (memcmp(digest, bytes + 16, 32) != 0) {
    damaged("checksum mismatch (truncated or altered)");
    return NULL;
  }

  kiln_model *m = calloc(1, sizeof *m);
  if (!m) {
    fail("E_SHAPE", "free memory", "out of memory loading the artifact");
    return NULL;
  }
  atomic_flag_clear(&m->running);
  m->threads = 1;
  json_error_t jerr;
  m->header = json_loadb((const char *)bytes + PREFIX_BYTES, header_len, 0, &jerr);
  if (!m->header) {
    damaged("header is not valid JSON (%s, at byte %d)", jerr.text, jerr.position);
    goto failed;
  }
  const json_t *h = m->header;
  if (!want_object(h, "the header")) goto failed;
  const size_t body_start = PREFIX_BYTES + header_len;

  /* sections: every one inside the file; weights and native are read */
  const json_t *sections = json_object_get(h, "sections");
  if (!want_object(sections, "sections")) goto failed;
  int64_t weights_off = 0, weights_len = 0, native_off = 0, native_len = 0;
  {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)sections, key, value) {
      char p[96];
      int64_t off, len;
      snprintf(p, sizeof p, "sections.%.60s", key);
      if (!want_section(value, p, body_start, size, &off, &len)) goto failed;
    }
  }
  if (!want_section(json_object_get(sections, "weights"), "sections.weights", body_start, size, &weights_off,
                    &weights_len))
    goto failed;
  const json_t *native = json_object_get(h, "native");
  const json_t *native_section = json_object_get(sections, "native");
  if (!native && !native_section) {
    fail("E_ARTIFACT", NATIVE_HINT, "the artifact has no native code (it was compiled for target '%s')",
         json_is_object(json_object_get(h, "cuda"))     ? "cuda"
         : json_is_object(json_object_get(h, "webgpu")) ? "webgpu"
                                                        : "wasm");
    goto failed;
  }
  if (!native || !native_section) {
    damaged("%s", native ? "native has no sections.native" : "sections.native has no native");
    goto failed;
  }
  if (!want_section(native_section, "sections.native", body_start, size, &native_off, &native_len)) goto failed;
  if (!want_object(native, "native")) goto failed;

  /* features of the runtime this one lacks */
  if (json_object_get(h, "symbols")) {
    fail("E_UNSUPPORTED", "compile the model with fixed shapes (kiln compile --dim NAME=VALUE for each run-time size)",
         "the artifact has run-time sizes (header.symbols), which are not supported by the C API yet");
    goto failed;
  }
  if (json_object_get(h, "control")) {
    fail("E_UNSUPPORTED", "compile with fixed shapes, or run the model from Node (kiln run / load())",
         "the artifact has control flow (If / Loop / Scan: header.control), which is not supported by the C API yet");
    goto failed;
  }

  /* the memory plan */
  int64_t memory_bytes, weights_at;
  if (!want_uint(json_object_get(h, "memoryBytes"), "memoryBytes", MAX_SAFE, NULL, &memory_bytes)) goto failed;
  if (!want_uint(json_object_get(h, "weightsAt"), "weightsAt", MAX_SAFE, NULL, &weights_at)) goto failed;
  if (weights_at + weights_len > memory_bytes) {
    damaged("the weights (%" PRId64 " bytes at weightsAt %" PRId64 ") do not fit in memoryBytes %" PRId64, weights_len,
            weights_at, memory_bytes);
    goto failed;
  }
  if (!want_bindings(json_object_get(h, "inputs"), "inputs", memory_bytes, &m->inputs, &m->n_inputs)) goto failed;
  if (!want_bindings(json_object_get(h, "outputs"), "outputs", memory_bytes, &m->outputs, &m->n_outputs))
    goto failed;

  /* the native code: where it runs, what it exports */
  const char *triple = want_name(json_object_get(native, "triple"), "native.triple");
  const char *cpu = triple ? want_name(json_object_get(native, "cpu"), "native.cpu") : NULL;
  const char *entry = cpu ? want_name(json_object_get(native, "entry"), "native.entry") : NULL;
  if (!entry) goto failed;
  const json_t *threads = json_object_get(native, "threads");
  if (threads && !json_is_boolean(threads)) {
    damaged("native.threads is not a boolean");
    goto failed;
  }
  const bool threaded = json_is_true(threads);
  m->cpu = cpu;
  if (!check_machine(native, triple, cpu)) goto failed;

  /* the memory, zeroed (anonymous pages), with the weights */
  if ((uint64_t)memory_bytes > SIZE_MAX - 4096) {
    fail("E_SHAPE", "free memory, or compile for smaller input shapes",
         "the model's memory plan needs %" PRId64 " bytes, which could not be allocated", memory_bytes);
    goto failed;
  }
  m->mapped_bytes = memory_bytes ? (size_t)memory_bytes : 1;
  void *mem = mmap(NULL, m->mapped_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    fail("E_SHAPE", "free memory, or compile for smaller input shapes",
         "the model's memory plan needs %" PRId64 " bytes, which could not be allocated: %s", memory_bytes,
         strerror(errno));
    goto failed;
  }
  m->memory = mem;
  if (weights_len) memcpy(m->memory + weights_at, bytes + weights_off, (size_t)weights_len);

  /* the library */
  if (threaded) pin_openmp();
  char why[1024];
  m->library = open_library(bytes + native_off, (size_t)native_len, why, sizeof why);
  if (!m->library) {
    fail("E_ARTIFACT",
         "check that the libraries it needs are installed (libgomp: Debian libgomp1) and TMPDIR is writable, or "
         "recompile the model (kiln compile --target native)",
         "the artifact's native library does not load: %s", why);
    goto failed;
  }
  dlerror();
  void *sym = dlsym(m->library, entry);
  if (!sym) {
    fail("E_ARTIFACT", DAMAGED_HINT, "the artifact's native library has no entry '%.80s'", entry);
    goto failed;
  }
  /* (a data pointer to a function pointer, as POSIX's dlsym requires) */
  if (threaded) memcpy(&m->entry_threads, &sym, sizeof sym);
  else memcpy(&m->entry, &sym, sizeof sym);
  return m;

failed:
  release(m);
  return NULL;
}

kiln_model *kiln_load_memory(const void *data, size_t size) {
  if (!data && size) {
    fail("E_INPUT", "pass the bytes of a .kiln file", "kiln_load_memory was given NULL");
    return NULL;
  }
  return load(data ? data : "", size);
}

kiln_model *kiln_load(const char *path) {
  if (!path) {
    fail("E_INPUT", "pass the path of a .kiln file", "kiln_load was given NULL");
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail("E_IO", "check the path (kiln compile MODEL.onnx --target native -o MODEL.kiln writes one)",
         "cannot open '%.1000s': %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    fail("E_IO", "check the file", "cannot read '%.1000s': %s", path, strerror(e));
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    fail("E_IO", "pass the path of a .kiln file", "cannot read '%.1000s': %s", path,
         S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file");
    return NULL;
  }
  size_t size = (size_t)st.st_size;
  uint8_t *bytes = malloc(size ? size : 1);
  if (!bytes) {
    close(fd);
    fail("E_SHAPE", "free memory", "cannot hold '%.1000s' (%zu bytes) in memory", path, size);
    return NULL;
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, bytes + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      free(bytes);
      fail("E_IO", "check the file", "cannot read '%.1000s': %s", path, strerror(e));
      return NULL;
    }
    if (r == 0) break; /* shrank while reading: the checks below see a truncated file */
    got += (size_t)r;
  }
  close(fd);
  kiln_model *m = load(bytes, got);
  free(bytes);
  return m;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* metadata */

static bool want_model(const kiln_model *m, const char *fn) {
  if (m) return true;
  fail("E_INPUT", "pass the model kiln_load returned", "%s was given no model (NULL)", fn);
  return false;
}

size_t kiln_input_count(const kiln_model *m) { return m ? m->n_inputs : 0; }
size_t kiln_output_count(const kiln_model *m) { return m ? m->n_outputs : 0; }

const kiln_tensor_info *kiln_input(const kiln_model *m, size_t i) {
  if (!want_model(m, "kiln_input")) return NULL;
  if (i >= m->n_inputs) {
    fail("E_INPUT", "see kiln_input_count", "input %zu of a model with %zu inputs", i, m->n_inputs);
    return NULL;
  }
  return &m->inputs[i].info;
}

const kiln_tensor_info *kiln_output(const kiln_model *m, size_t i) {
  if (!want_model(m, "kiln_output")) return NULL;
  if (i >= m->n_outputs) {
    fail("E_INPUT", "see kiln_output_count", "output %zu of a model with %zu outputs", i, m->n_outputs);
    return NULL;
  }
  return &m->outputs[i].info;
}

static ptrdiff_t find(const binding *list, size_t n, const char *name, const char *what) {
  for (size_t i = 0; name && i < n; i++)
    if (strcmp(list[i].info.name, name) == 0) return (ptrdiff_t)i;
  char names[512] = "";
  size_t used = 0;
  for (size_t i = 0; i < n && used < sizeof names; i++) {
    int k = snprintf(names + used, sizeof names - used, "%s'%s'", i ? ", " : "", list[i].info.name);
    used = k < 0 ? sizeof names : used + (size_t)k;
  }
  fail("E_INPUT", NULL, "the model has no %s named '%.200s' (its %ss: %s)", what, name ? name : "(null)", what, names);
  return -1;
}

ptrdiff_t kiln_input_index(const kiln_model *m, const char *name) {
  return want_model(m, "kiln_input_index") ? find(m->inputs, m->n_inputs, name, "input") : -1;
}

ptrdiff_t kiln_output_index(const kiln_model *m, const char *name) {
  return want_model(m, "kiln_output_index") ? find(m->outputs, m->n_outputs, name, "output") : -1;
}

int kiln_set_threads(kiln_model *m, int threads) {
  if (!want_model(m, "kiln_set_threads")) return -1;
  if (threads < 1) {
    fail("E_INPUT", "pass 1 or more", "threads is %d", threads);
    return -1;
  }
  m->threads = threads;
  return 0;
}

int kiln_threads(const kiln_model *m) { return m ? m->threads : 0; }

const char *kiln_cpu_level(const kiln_model *m) { return m ? m->cpu : NULL; }

/* ------------------------------------------------------------------------------------------------------------ */
/* running */

int kiln_run(kiln_model *m, const void *const *inputs, void *const *outputs) {
  if (!want_model(m, "kiln_run")) return -1;
  if ((m->n_inputs && !inputs) || (m->n_outputs && !outputs)) {
    fail("E_INPUT", "pass one buffer per input and per output, in the order of kiln_input / kiln_output",
         "kiln_run was given no %s array (NULL)", m->n_inputs && !inputs ? "input" : "output");
    return -1;
  }
  for (size_t i = 0; i < m->n_inputs; i++)
    if (!inputs[i] && m->inputs[i].info.byte_size) {
      fail("E_INPUT", "pass a buffer of kiln_input(model, i)->byte_size bytes", "input %zu ('%s') is NULL", i,
           m->inputs[i].info.name);
      return -1;
    }
  for (size_t i = 0; i < m->n_outputs; i++)
    if (!outputs[i] && m->outputs[i].info.byte_size) {
      fail("E_INPUT", "pass a buffer of kiln_output(model, i)->byte_size bytes", "output %zu ('%s') is NULL", i,
           m->outputs[i].info.name);
      return -1;
    }
  if (atomic_flag_test_and_set(&m->running)) {
    fail("E_INPUT", "run a model on one thread at a time, or load one model per thread",
         "the model is running on another thread");
    return -1;
  }
  for (size_t i = 0; i < m->n_inputs; i++)
    if (m->inputs[i].info.byte_size)
      memcpy(m->memory + m->inputs[i].offset, inputs[i], m->inputs[i].info.byte_size);
  if (m->entry_threads) m->entry_threads(m->memory, m->threads);
  else m->entry(m->memory);
  for (size_t i = 0; i < m->n_outputs; i++)
    if (m->outputs[i].info.byte_size)
      memcpy(outputs[i], m->memory + m->outputs[i].offset, m->outputs[i].info.byte_size);
  atomic_flag_clear(&m->running);
  return 0;
}

void kiln_free(kiln_model *m) { release(m); }
