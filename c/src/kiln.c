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
 *   - control flow (header.control: If / Loop / Scan): the library's entry then runs one call,
 *     `kiln_call(void *memory, int call, int threads)`, and this runtime runs the checked control program between
 *     calls (control.ts's runControl: branches on a bool in memory, loops with a trip count and / or a condition,
 *     copies of loop-carried values and scan slices);
 *   - run-time sizes (header.symbols): kiln_run_shaped takes each input's shape, checks the sizes against their
 *     ranges and each other, writes their int32 values at symbolsAt, copies the inputs into their layouts at the
 *     sizes' upper bounds, and the outputs out of them at the shapes the header's dim expressions give (what
 *     src/runtime/run-sizes.ts does);
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
  int64_t *shape;        /* the layout's shape: with run-time sizes, at the symbols' upper bounds */
  size_t offset;
  /* with run-time sizes: per dim NULL (fixed) or its text (info.dims), and its expression tree over the symbols */
  const char **dims;
  const json_t **trees;
} binding;

/* A size the model takes at run time (header.symbols[i]), with the range it was compiled for. */
typedef struct symbol {
  const char *name;
  int64_t min, max;
  bool counted;               /* counted by a kernel from the data (NonZero's count), not given by an input's shape */
  bool declared;              /* a counted size whose range the user declared: [lo, hi], max = hi + 1 */
  int64_t declared_lo, declared_hi;
} symbol;

struct kiln_model {
  json_t *header; /* owns the strings the bindings point to */
  binding *inputs, *outputs;
  size_t n_inputs, n_outputs;
  uint8_t *memory;
  size_t mapped_bytes;
  void *library;
  void (*entry_threads)(void *, int);
  void (*entry)(void *);
  /* a program with control flow (header.control, checked): its calls one at a time through the per-call entry */
  const json_t *control;
  size_t n_calls;
  void (*entry_call)(void *, int, int);
  int threads;
  const char *cpu;
  atomic_flag running;
  /* run-time sizes (header.symbols): their int32 values live at symbols_at in memory while a run goes */
  symbol *symbols;
  size_t n_symbols;
  size_t symbols_at;
  const json_t *dim_exprs;
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
static bool want_dims(const kiln_model *m, const json_t *dims, const char *path, binding *out);

static bool want_binding(const kiln_model *m, const json_t *v, const char *list, size_t i, int64_t memory_bytes,
                         binding *all) {
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
  const json_t *dims = json_object_get(v, "dims");
  snprintf(q, sizeof q, "%s.dims", p);
  if (dims && !want_dims(m, dims, q, out)) return false;
  out->info.dims = out->dims;
  return true;
}

static bool want_bindings(const kiln_model *m, const json_t *list, const char *path, int64_t memory_bytes,
                          binding **out, size_t *n) {
  if (!want_array(list, path)) return false;
  *n = json_array_size(list);
  *out = calloc(*n ? *n : 1, sizeof **out);
  if (!*out) {
    fail("E_SHAPE", "free memory", "out of memory reading the header");
    return false;
  }
  for (size_t i = 0; i < *n; i++)
    if (!want_binding(m, json_array_get(list, i), path, i, memory_bytes, *out)) return false;
  return true;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* run-time sizes */

/* Deepest dim expression a header may nest. */
#define MAX_DIM_DEPTH 64
/* Highest rank of a tensor with run-time sizes (copy_strided's index). */
#define MAX_DIM_RANK 64

static ptrdiff_t symbol_index(const kiln_model *m, const char *name) {
  for (size_t i = 0; i < m->n_symbols; i++)
    if (strcmp(m->symbols[i].name, name) == 0) return (ptrdiff_t)i;
  return -1;
}

/*
 * The value of a dim expression (a number, a symbol's name, or [op, a, b] with op +, *, min, max, floordiv) at the
 * symbols' `values` (as src/runtime/run-sizes.ts's evalDimExpr); false, with the artifact damaged, for a tree that
 * is none of those. `path` names the tree in the message.
 */
static bool eval_dim(const kiln_model *m, const json_t *e, const int64_t *values, const char *path, int depth,
                     int64_t *out) {
  char b[64];
  if (json_is_integer(e)) {
    *out = (int64_t)json_integer_value(e);
    return true;
  }
  if (json_is_string(e)) {
    ptrdiff_t s = symbol_index(m, json_string_value(e));
    if (s < 0) {
      damaged("%s names '%.80s', which is no symbol", path, json_string_value(e));
      return false;
    }
    *out = values[s];
    return true;
  }
  if (!json_is_array(e) || json_array_size(e) != 3 || !json_is_string(json_array_get(e, 0)) ||
      depth > MAX_DIM_DEPTH) {
    damaged("%s is %s, not a dim expression", path, shown(e, b, sizeof b));
    return false;
  }
  const char *op = json_string_value(json_array_get(e, 0));
  int64_t x, y;
  if (!eval_dim(m, json_array_get(e, 1), values, path, depth + 1, &x)) return false;
  if (strcmp(op, "floordiv") == 0) {
    const json_t *d = json_array_get(e, 2);
    if (!json_is_integer(d) || json_integer_value(d) < 1) {
      damaged("%s divides by %s, not a positive integer", path, shown(d, b, sizeof b));
      return false;
    }
    y = (int64_t)json_integer_value(d);
    *out = x >= 0 ? x / y : -((-(x + 1)) / y) - 1; /* floor, as Math.floor */
    return true;
  }
  if (!eval_dim(m, json_array_get(e, 2), values, path, depth + 1, &y)) return false;
  bool overflow = false;
  if (strcmp(op, "+") == 0) overflow = __builtin_add_overflow(x, y, out);
  else if (strcmp(op, "*") == 0) overflow = __builtin_mul_overflow(x, y, out);
  else if (strcmp(op, "min") == 0) *out = x < y ? x : y;
  else if (strcmp(op, "max") == 0) *out = x > y ? x : y;
  else {
    damaged("%s has the operator '%.20s', not one of +, *, min, max, floordiv", path, op);
    return false;
  }
  if (overflow || *out < -MAX_SAFE || *out > MAX_SAFE) {
    damaged("%s overflows", path);
    return false;
  }
  return true;
}

/* header.symbols, symbolsAt and dimExprs (checked as header-check.ts's checkSymbols does). */
static bool want_symbols(kiln_model *m, const json_t *h, int64_t memory_bytes) {
  const json_t *list = json_object_get(h, "symbols");
  m->dim_exprs = json_object_get(h, "dimExprs");
  if (m->dim_exprs && !want_object(m->dim_exprs, "dimExprs")) return false;
  if (!list) return true;
  if (!want_array(list, "symbols")) return false;
  m->n_symbols = json_array_size(list);
  m->symbols = calloc(m->n_symbols ? m->n_symbols : 1, sizeof *m->symbols);
  if (!m->symbols) {
    fail("E_SHAPE", "free memory", "out of memory reading the header");
    return false;
  }
  for (size_t i = 0; i < m->n_symbols; i++) {
    const json_t *v = json_array_get(list, i);
    symbol *s = m->symbols + i;
    char p[64], q[96];
    snprintf(p, sizeof p, "symbols[%zu]", i);
    if (!want_object(v, p)) return false;
    snprintf(q, sizeof q, "%s.name", p);
    if (!(s->name = want_name(json_object_get(v, "name"), q))) return false;
    if (symbol_index(m, s->name) != (ptrdiff_t)i) {
      damaged("%s '%.80s' appears twice", q, s->name);
      return false;
    }
    snprintf(q, sizeof q, "%s.min", p);
    if (!want_uint(json_object_get(v, "min"), q, INT32_MAX, NULL, &s->min)) return false;
    snprintf(q, sizeof q, "%s.max", p);
    if (!want_uint(json_object_get(v, "max"), q, INT32_MAX, NULL, &s->max)) return false;
    if (s->min > s->max) {
      damaged("%s.min %" PRId64 " is past its max %" PRId64, p, s->min, s->max);
      return false;
    }
    const json_t *counted = json_object_get(v, "counted");
    if (counted && !json_is_boolean(counted)) {
      damaged("%s.counted is not a boolean", p);
      return false;
    }
    s->counted = json_is_true(counted);
    const json_t *declared = json_object_get(v, "declared");
    if (declared) {
      if (!s->counted || !json_is_array(declared) || json_array_size(declared) != 2) {
        damaged("%s.declared is not the range of a counted size", p);
        return false;
      }
      snprintf(q, sizeof q, "%s.declared[0]", p);
      if (!want_uint(json_array_get(declared, 0), q, INT32_MAX, NULL, &s->declared_lo)) return false;
      snprintf(q, sizeof q, "%s.declared[1]", p);
      if (!want_uint(json_array_get(declared, 1), q, INT32_MAX, NULL, &s->declared_hi)) return false;
      if (s->declared_lo > s->declared_hi || s->declared_hi + 1 != s->max) {
        damaged("%s.declared does not end one below its max %" PRId64, p, s->max);
        return false;
      }
      s->declared = true;
    }
  }
  int64_t at;
  if (!want_uint(json_object_get(h, "symbolsAt"), "symbolsAt", memory_bytes - 4 * (int64_t)m->n_symbols, "memoryBytes",
                 &at))
    return false;
  if (at % 4) {
    damaged("symbolsAt %" PRId64 " is not a multiple of 4", at);
    return false;
  }
  m->symbols_at = (size_t)at;
  return true;
}

/*
 * A binding's dims: per dim its number, or the text of a run-time size (a symbol, or a key of dimExprs) whose value
 * at the symbols' upper bounds is the shape's dim (the layout).
 */
static bool want_dims(const kiln_model *m, const json_t *dims, const char *path, binding *out) {
  size_t rank = out->info.rank;
  if (!want_array(dims, path)) return false;
  if (rank > MAX_DIM_RANK) {
    fail("E_UNSUPPORTED", "compile the model with that tensor's shape fixed",
         "%s: a tensor of rank %zu with run-time sizes (this runtime copies up to rank %d)", path, rank, MAX_DIM_RANK);
    return false;
  }
  if (json_array_size(dims) != rank) {
    damaged("%s has %zu dims, the shape %zu", path, json_array_size(dims), rank);
    return false;
  }
  out->dims = calloc(rank ? rank : 1, sizeof *out->dims);
  out->trees = calloc(rank ? rank : 1, sizeof *out->trees);
  int64_t *bounds = calloc(m->n_symbols ? m->n_symbols : 1, sizeof *bounds);
  if (!out->dims || !out->trees || !bounds) {
    free(bounds);
    fail("E_SHAPE", "free memory", "out of memory reading the header");
    return false;
  }
  for (size_t s = 0; s < m->n_symbols; s++) bounds[s] = m->symbols[s].max;
  bool ok = true;
  for (size_t d = 0; ok && d < rank; d++) {
    const json_t *x = json_array_get(dims, d);
    char q[128];
    snprintf(q, sizeof q, "%s[%zu]", path, d);
    int64_t at;
    if (json_is_string(x)) {
      const char *text = json_string_value(x);
      const json_t *tree = symbol_index(m, text) >= 0 ? x : json_object_get(m->dim_exprs, text);
      if (!tree) {
        damaged("%s is '%.80s', neither a symbol nor a key of dimExprs", q, text);
        ok = false;
        break;
      }
      out->dims[d] = text;
      out->trees[d] = tree;
      ok = eval_dim(m, tree, bounds, q, 0, &at);
    } else {
      ok = want_uint(x, q, MAX_SAFE, NULL, &at);
    }
    if (ok && at != out->shape[d]) {
      damaged("%s is %" PRId64 " at the symbols' bounds, the shape %" PRId64, q, at, out->shape[d]);
      ok = false;
    }
  }
  free(bounds);
  return ok;
}

/*
 * Copies between a dense tensor of `shape` and its layout at `bound` (same rank, every dim <= the bound's), row by
 * row of the innermost dim (run-sizes.ts's copyStrided).
 */
static void copy_strided(uint8_t *dense, const int64_t *shape, uint8_t *laid_out, const int64_t *bound, size_t rank,
                         size_t elem, bool to_layout) {
  bool inner_full = true;
  size_t count = 1;
  for (size_t d = 0; d < rank; d++) {
    count *= (size_t)shape[d];
    if (d > 0 && shape[d] != bound[d]) inner_full = false;
  }
  if (count == 0) return;
  if (rank == 0 || inner_full) {
    if (to_layout) memcpy(laid_out, dense, count * elem);
    else memcpy(dense, laid_out, count * elem);
    return;
  }
  size_t row = (size_t)shape[rank - 1] * elem, rows = count / (size_t)shape[rank - 1];
  size_t idx[MAX_DIM_RANK] = {0};
  for (size_t r = 0; r < rows; r++) {
    size_t at = 0;
    for (size_t d = 0; d + 1 < rank; d++) at = (at + idx[d]) * (size_t)bound[d + 1];
    at *= elem;
    if (to_layout) memcpy(laid_out + at, dense + r * row, row);
    else memcpy(dense + r * row, laid_out + at, row);
    for (size_t d = rank - 1; d-- > 0;) {
      if (++idx[d] < (size_t)shape[d]) break;
      idx[d] = 0;
    }
  }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* control flow */

/* Deepest nesting of control steps a header may have (header-check.ts's MAX_CONTROL_DEPTH). */
#define MAX_CONTROL_DEPTH 64

/* An address of `bytes` bytes inside memory, at `path`. */
static bool want_address(const json_t *v, const char *path, int64_t bytes, int64_t memory_bytes) {
  int64_t a;
  if (!want_uint(v, path, memory_bytes, "memoryBytes", &a)) return false;
  if (a + bytes > memory_bytes) {
    damaged("%s %" PRId64 " + %" PRId64 " bytes lies outside memoryBytes %" PRId64, path, a, bytes, memory_bytes);
    return false;
  }
  return true;
}

/* An optional integer stride. */
static bool want_stride(const json_t *v, const char *path) {
  char b[64];
  if (!v || (json_is_integer(v) && json_integer_value(v) >= -MAX_SAFE && json_integer_value(v) <= MAX_SAFE))
    return true;
  damaged("%s is %s, not an integer", path, shown(v, b, sizeof b));
  return false;
}

/* The control program (If / Loop / Scan), as header-check.ts's checkControl: calls that exist, addresses inside
 * memory, nesting that ends. */
static bool want_control(const json_t *v, const char *path, size_t n_calls, int64_t memory_bytes, int depth) {
  if (depth > MAX_CONTROL_DEPTH) {
    damaged("%s nests more than %d levels", path, MAX_CONTROL_DEPTH);
    return false;
  }
  if (!want_array(v, path)) return false;
  for (size_t i = 0; i < json_array_size(v); i++) {
    const json_t *o = json_array_get(v, i);
    char p[192], q[224], b[64];
    snprintf(p, sizeof p, "%.150s[%zu]", path, i);
    if (!want_object(o, p)) return false;
    const json_t *op = json_object_get(o, "op");
    const char *name = json_is_string(op) ? json_string_value(op) : "";
    int64_t x;
    if (strcmp(name, "call") == 0) {
      snprintf(q, sizeof q, "%s.call", p);
      if (!n_calls) {
        damaged("%s names a call of a program without calls", q);
        return false;
      }
      if (!want_uint(json_object_get(o, "call"), q, (int64_t)n_calls - 1, "the last call", &x)) return false;
    } else if (strcmp(name, "copy") == 0) {
      snprintf(q, sizeof q, "%s.bytes", p);
      if (!want_uint(json_object_get(o, "bytes"), q, memory_bytes, NULL, &x)) return false;
      snprintf(q, sizeof q, "%s.from", p);
      if (!want_address(json_object_get(o, "from"), q, x, memory_bytes)) return false;
      snprintf(q, sizeof q, "%s.to", p);
      if (!want_address(json_object_get(o, "to"), q, x, memory_bytes)) return false;
      snprintf(q, sizeof q, "%s.fromStride", p);
      if (!want_stride(json_object_get(o, "fromStride"), q)) return false;
      snprintf(q, sizeof q, "%s.toStride", p);
      if (!want_stride(json_object_get(o, "toStride"), q)) return false;
    } else if (strcmp(name, "if") == 0) {
      snprintf(q, sizeof q, "%s.cond", p);
      if (!want_address(json_object_get(o, "cond"), q, 1, memory_bytes)) return false;
      snprintf(q, sizeof q, "%s.then", p);
      if (!want_control(json_object_get(o, "then"), q, n_calls, memory_bytes, depth + 1)) return false;
      snprintf(q, sizeof q, "%s.else", p);
      if (!want_control(json_object_get(o, "else"), q, n_calls, memory_bytes, depth + 1)) return false;
    } else if (strcmp(name, "loop") == 0) {
      const json_t *trip = json_object_get(o, "trip");
      snprintf(q, sizeof q, "%s.trip", p);
      if (json_is_integer(trip)) {
        if (json_integer_value(trip) < -1 || json_integer_value(trip) > MAX_SAFE) {
          damaged("%s is %s, not a trip count", q, shown(trip, b, sizeof b));
          return false;
        }
      } else {
        if (!want_object(trip, q)) return false;
        snprintf(q, sizeof q, "%s.trip.at", p);
        if (!want_address(json_object_get(trip, "at"), q, 8, memory_bytes)) return false;
      }
      static const struct {
        const char *key;
        int64_t bytes;
      } ADDRESSES[] = {{"cond", 1}, {"condFrom", 1}, {"iter", 8}};
      for (size_t k = 0; k < sizeof ADDRESSES / sizeof ADDRESSES[0]; k++) {
        const json_t *a = json_object_get(o, ADDRESSES[k].key);
        snprintf(q, sizeof q, "%s.%s", p, ADDRESSES[k].key);
        if (a && !want_address(a, q, ADDRESSES[k].bytes, memory_bytes)) return false;
      }
      const json_t *full = json_object_get(o, "fullTrip");
      if (full && !json_is_boolean(full)) {
        damaged("%s.fullTrip is %s, not true or false", p, shown(full, b, sizeof b));
        return false;
      }
      snprintf(q, sizeof q, "%s.name", p);
      if (!want_name(json_object_get(o, "name"), q)) return false;
      snprintf(q, sizeof q, "%s.body", p);
      if (!want_control(json_object_get(o, "body"), q, n_calls, memory_bytes, depth + 1)) return false;
    } else {
      damaged("%s.op is %s, not 'call', 'copy', 'if' or 'loop'", p, shown(op, b, sizeof b));
      return false;
    }
  }
  return true;
}

static int64_t field(const json_t *o, const char *key) { return (int64_t)json_integer_value(json_object_get(o, key)); }

/*
 * Runs checked control steps (control.ts's runControl): calls through the per-call entry, copies (strided by the
 * loop's iteration), branches on a bool in memory, loops with a trip count and / or a condition. False with the
 * error set where a strided copy leaves memory or a loop with sized scan outputs stops early.
 */
static bool run_control(kiln_model *m, const json_t *steps, int64_t iter) {
  for (size_t i = 0; i < json_array_size(steps); i++) {
    const json_t *s = json_array_get(steps, i);
    const char *op = json_string_value(json_object_get(s, "op"));
    if (strcmp(op, "call") == 0) {
      m->entry_call(m->memory, (int)field(s, "call"), m->threads);
    } else if (strcmp(op, "copy") == 0) {
      int64_t bytes = field(s, "bytes"), from = field(s, "from") + iter * field(s, "fromStride"),
              to = field(s, "to") + iter * field(s, "toStride");
      if (from < 0 || to < 0 || from + bytes > (int64_t)m->mapped_bytes || to + bytes > (int64_t)m->mapped_bytes) {
        damaged("a control copy of %" PRId64 " bytes from %" PRId64 " to %" PRId64 " lies outside memory", bytes, from,
                to);
        return false;
      }
      if (from != to && bytes > 0) memmove(m->memory + to, m->memory + from, (size_t)bytes);
    } else if (strcmp(op, "if") == 0) {
      const char *branch = m->memory[field(s, "cond")] ? "then" : "else";
      if (!run_control(m, json_object_get(s, branch), iter)) return false;
    } else {
      const json_t *trip = json_object_get(s, "trip");
      int64_t end;
      if (json_is_integer(trip)) end = json_integer_value(trip) < 0 ? INT64_MAX : json_integer_value(trip);
      else {
        memcpy(&end, m->memory + field(trip, "at"), 8);
        if (end < 0) end = 0;
      }
      const json_t *cond = json_object_get(s, "cond"), *cond_from = json_object_get(s, "condFrom"),
                   *iter_at = json_object_get(s, "iter");
      if (cond) m->memory[json_integer_value(cond)] = !cond_from || m->memory[json_integer_value(cond_from)] ? 1 : 0;
      int64_t k = 0;
      for (; k < end; k++) {
        if (cond && m->memory[json_integer_value(cond)] == 0) break;
        if (iter_at) memcpy(m->memory + json_integer_value(iter_at), &k, 8);
        if (!run_control(m, json_object_get(s, "body"), k)) return false;
      }
      if (json_is_true(json_object_get(s, "fullTrip")) && k < end) {
        fail("E_DYNAMIC",
             "scan outputs of a loop that ends early have run-time length, which Kiln does not compile yet; give the "
             "Loop no condition, or return the values as loop-carried state",
             "Loop '%s' stopped after %" PRId64 " of %" PRId64
             " iterations; its scan outputs were sized for %" PRId64 " at compile time",
             json_string_value(json_object_get(s, "name")), k, end, end);
        return false;
      }
    }
  }
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
  for (size_t i = 0; m->inputs && i < m->n_inputs; i++) {
    free(m->inputs[i].shape);
    free(m->inputs[i].dims);
    free(m->inputs[i].trees);
  }
  for (size_t i = 0; m->outputs && i < m->n_outputs; i++) {
    free(m->outputs[i].shape);
    free(m->outputs[i].dims);
    free(m->outputs[i].trees);
  }
  free(m->symbols);
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

  /* the memory plan */
  int64_t memory_bytes, weights_at;
  if (!want_uint(json_object_get(h, "memoryBytes"), "memoryBytes", MAX_SAFE, NULL, &memory_bytes)) goto failed;
  if (!want_uint(json_object_get(h, "weightsAt"), "weightsAt", MAX_SAFE, NULL, &weights_at)) goto failed;
  if (weights_at + weights_len > memory_bytes) {
    damaged("the weights (%" PRId64 " bytes at weightsAt %" PRId64 ") do not fit in memoryBytes %" PRId64, weights_len,
            weights_at, memory_bytes);
    goto failed;
  }
  if (!want_symbols(m, h, memory_bytes)) goto failed;
  const json_t *calls = json_object_get(h, "calls");
  if (!want_array(calls, "calls")) goto failed;
  m->n_calls = json_array_size(calls);
  m->control = json_object_get(h, "control");
  if (m->control && !want_control(m->control, "control", m->n_calls, memory_bytes, 0)) goto failed;
  if (!want_bindings(m, json_object_get(h, "inputs"), "inputs", memory_bytes, &m->inputs, &m->n_inputs)) goto failed;
  if (!want_bindings(m, json_object_get(h, "outputs"), "outputs", memory_bytes, &m->outputs, &m->n_outputs))
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
  const json_t *per_call = json_object_get(native, "perCall");
  if (per_call && !json_is_boolean(per_call)) {
    damaged("native.perCall is not a boolean");
    goto failed;
  }
  if (json_is_true(per_call) != (m->control != NULL)) {
    damaged("%s", m->control ? "the control program's calls have no per-call entry (native.perCall)"
                             : "native.perCall is set, but the artifact has no control program");
    goto failed;
  }
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
  if (m->control) memcpy(&m->entry_call, &sym, sizeof sym);
  else if (threaded) memcpy(&m->entry_threads, &sym, sizeof sym);
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

size_t kiln_symbol_count(const kiln_model *m) { return m ? m->n_symbols : 0; }

const char *kiln_symbol(const kiln_model *m, size_t i, int64_t *min, int64_t *max) {
  if (!want_model(m, "kiln_symbol")) return NULL;
  if (i >= m->n_symbols) {
    fail("E_INPUT", "see kiln_symbol_count", "run-time size %zu of a model with %zu", i, m->n_symbols);
    return NULL;
  }
  if (min) *min = m->symbols[i].min;
  if (max) *max = m->symbols[i].max;
  return m->symbols[i].name;
}

/* The buffers kiln_run and kiln_run_shaped take: an array of them, none NULL where there are bytes to hold. */
static bool want_buffers(const kiln_model *m, const char *fn, const void *const *inputs, void *const *outputs) {
  if ((m->n_inputs && !inputs) || (m->n_outputs && !outputs)) {
    fail("E_INPUT", "pass one buffer per input and per output, in the order of kiln_input / kiln_output",
         "%s was given no %s array (NULL)", fn, m->n_inputs && !inputs ? "input" : "output");
    return false;
  }
  for (size_t i = 0; i < m->n_inputs; i++)
    if (!inputs[i] && m->inputs[i].info.byte_size) {
      fail("E_INPUT", "pass a buffer of kiln_input(model, i)->byte_size bytes", "input %zu ('%s') is NULL", i,
           m->inputs[i].info.name);
      return false;
    }
  for (size_t i = 0; i < m->n_outputs; i++)
    if (!outputs[i] && m->outputs[i].info.byte_size) {
      fail("E_INPUT", "pass a buffer of kiln_output(model, i)->byte_size bytes", "output %zu ('%s') is NULL", i,
           m->outputs[i].info.name);
      return false;
    }
  return true;
}

/* Runs the code on the memory: every call, or the control program's. False with the error set where that fails. */
static bool run_code(kiln_model *m) {
  if (m->control) return run_control(m, m->control, 0);
  if (m->entry_threads) m->entry_threads(m->memory, m->threads);
  else m->entry(m->memory);
  return true;
}

static int run_model(kiln_model *m, const void *const *inputs, const int64_t *const *input_shapes,
                     void *const *outputs, int64_t *const *output_shapes);

int kiln_run(kiln_model *m, const void *const *inputs, void *const *outputs) {
  if (!want_model(m, "kiln_run") || !want_buffers(m, "kiln_run", inputs, outputs)) return -1;
  if (m->n_symbols) {
    fail("E_INPUT", "call kiln_run_shaped with each input's shape (kiln_symbol lists the sizes and their ranges)",
         "the model has run-time sizes ('%s' %" PRId64 "..%" PRId64 "%s), so kiln_run does not know the inputs' shapes",
         m->symbols[0].name, m->symbols[0].min, m->symbols[0].max, m->n_symbols > 1 ? ", ..." : "");
    return -1;
  }
  return run_model(m, inputs, NULL, outputs, NULL);
}

/*
 * The symbols' values from the inputs' shapes (run-sizes.ts's symbolValues): fixed dims as compiled, each size
 * inside its range and the same wherever it appears, every size an input gives known, and dims that are
 * expressions of them agreeing; counted sizes start at their min. False with E_INPUT (or E_ARTIFACT) otherwise.
 */
static bool input_sizes(const kiln_model *m, const int64_t *const *shapes, int64_t *values) {
  const size_t none = (size_t)-1;
  /* per symbol: the input and dim that gave its value */
  size_t *from = calloc(m->n_symbols ? m->n_symbols * 2 : 1, sizeof *from);
  if (!from) {
    fail("E_SHAPE", "free memory", "out of memory");
    return false;
  }
  for (size_t s = 0; s < m->n_symbols; s++) from[2 * s] = none;
  bool ok = true;
  for (size_t i = 0; ok && i < m->n_inputs; i++) {
    const binding *b = m->inputs + i;
    if (!shapes[i] && b->info.rank) {
      fail("E_INPUT", "pass the shape of every input (rank entries each)", "the shape of input %zu ('%s') is NULL", i,
           b->info.name);
      ok = false;
      break;
    }
    for (size_t d = 0; ok && d < b->info.rank; d++) {
      int64_t v = shapes[i][d];
      ptrdiff_t s = b->dims && b->dims[d] ? symbol_index(m, b->dims[d]) : -1;
      if (!b->dims || !b->dims[d]) {
        if (v != b->shape[d]) {
          fail("E_INPUT", "pass the size the model was compiled for, or recompile with --dim for a run-time size",
               "input '%s' dim %zu is %" PRId64 ", the model takes %" PRId64, b->info.name, d, v, b->shape[d]);
          ok = false;
        }
        continue;
      }
      if (s < 0) continue; /* an expression: checked below */
      const symbol *sym = m->symbols + s;
      if (v < sym->min || v > sym->max) {
        fail("E_INPUT", "pass a size in the range, or recompile with --dim NAME=LO..HI",
             "input '%s' dim %zu (%s) is %" PRId64 ", outside the range %" PRId64 "..%" PRId64
             " the model was compiled for",
             b->info.name, d, sym->name, v, sym->min, sym->max);
        ok = false;
      } else if (from[2 * s] != none && values[s] != v) {
        fail("E_INPUT", "pass inputs that agree on that size",
             "input '%s' dim %zu (%s) is %" PRId64 ", but input '%s' dim %zu is %" PRId64 ": they are the same size",
             b->info.name, d, sym->name, v, m->inputs[from[2 * s]].info.name, from[2 * s + 1], values[s]);
        ok = false;
      } else if (from[2 * s] == none) {
        values[s] = v;
        from[2 * s] = i;
        from[2 * s + 1] = d;
      }
    }
  }
  for (size_t s = 0; ok && s < m->n_symbols; s++) {
    if (m->symbols[s].counted) values[s] = m->symbols[s].min;
    else if (from[2 * s] == none) {
      fail("E_INPUT", "recompile with that dim fixed (--dim NAME=N)",
           "no input has a dim that is just '%s', so its size is unknown", m->symbols[s].name);
      ok = false;
    }
  }
  free(from);
  for (size_t i = 0; ok && i < m->n_inputs; i++) {
    const binding *b = m->inputs + i;
    for (size_t d = 0; ok && b->dims && d < b->info.rank; d++) {
      if (!b->dims[d] || symbol_index(m, b->dims[d]) >= 0) continue;
      int64_t want;
      if (!(ok = eval_dim(m, b->trees[d], values, b->dims[d], 0, &want))) break;
      if (shapes[i][d] != want) {
        fail("E_INPUT", "pass the size the other inputs make it",
             "input '%s' dim %zu (%s) is %" PRId64 ", but the other inputs make it %" PRId64, b->info.name, d,
             b->dims[d], shapes[i][d], want);
        ok = false;
      }
    }
  }
  return ok;
}

/* The sizes the kernels counted (run-sizes.ts's sizesAfterRun), read from the symbols' region into `values`. */
static bool counted_sizes(const kiln_model *m, int64_t *values) {
  for (size_t s = 0; s < m->n_symbols; s++) {
    const symbol *sym = m->symbols + s;
    if (!sym->counted) continue;
    int32_t v;
    memcpy(&v, m->memory + m->symbols_at + 4 * s, 4);
    int64_t lo = sym->declared ? sym->declared_lo : sym->min, hi = sym->declared ? sym->declared_hi : sym->max;
    if (sym->declared && v >= sym->min && v <= sym->max && !(v >= lo && v <= hi)) {
      fail("E_INPUT", "compile with a range that holds it: kiln compile --dim NAME=LO..HI",
           "the inputs make the Range that counts '%s' %" PRId32 " elements, outside the range %" PRId64 "..%" PRId64
           " it was compiled for (or its delta is 0)",
           sym->name, v, lo, hi);
      return false;
    }
    if (v < sym->min || v > sym->max) {
      damaged("the run counted the size '%s' as %" PRId32 ", outside its range %" PRId64 "..%" PRId64, sym->name, v,
              sym->min, sym->max);
      return false;
    }
    values[s] = v;
  }
  return true;
}

int kiln_run_shaped(kiln_model *m, const void *const *inputs, const int64_t *const *input_shapes,
                    void *const *outputs, int64_t *const *output_shapes) {
  if (!want_model(m, "kiln_run_shaped") || !want_buffers(m, "kiln_run_shaped", inputs, outputs)) return -1;
  if (m->n_inputs && !input_shapes) {
    fail("E_INPUT", "pass one shape per input (rank entries each), in the order of kiln_input",
         "kiln_run_shaped was given no input shapes (NULL)");
    return -1;
  }
  return run_model(m, inputs, input_shapes, outputs, output_shapes);
}

/*
 * A run over checked buffers (kiln_run, kiln_run_shaped): `input_shapes` NULL for the compiled shapes of a model
 * without run-time sizes. Inputs in, the code, outputs out at the run's shapes into `output_shapes` (when given).
 */
static int run_model(kiln_model *m, const void *const *inputs, const int64_t *const *input_shapes,
                     void *const *outputs, int64_t *const *output_shapes) {
  int64_t *values = NULL, shape[MAX_DIM_RANK];
  if (m->n_symbols && !(values = calloc(m->n_symbols, sizeof *values))) {
    fail("E_SHAPE", "free memory", "out of memory");
    return -1;
  }
  int status = -1;
  if (input_shapes && !input_sizes(m, input_shapes, values)) goto done;
  if (atomic_flag_test_and_set(&m->running)) {
    fail("E_INPUT", "run a model on one thread at a time, or load one model per thread",
         "the model is running on another thread");
    goto done;
  }
  for (size_t s = 0; s < m->n_symbols; s++) {
    int32_t v = (int32_t)values[s];
    memcpy(m->memory + m->symbols_at + 4 * s, &v, 4);
  }
  for (size_t i = 0; i < m->n_inputs; i++) {
    const binding *b = m->inputs + i;
    if (b->dims && input_shapes)
      copy_strided((uint8_t *)inputs[i], input_shapes[i], m->memory + b->offset, b->shape, b->info.rank,
                   b->info.element_size, true);
    else if (b->info.byte_size)
      memcpy(m->memory + b->offset, inputs[i], b->info.byte_size);
  }
  bool ok = run_code(m) && counted_sizes(m, values);
  for (size_t i = 0; ok && i < m->n_outputs; i++) {
    const binding *b = m->outputs + i;
    if (!b->dims) {
      if (b->info.byte_size) memcpy(outputs[i], m->memory + b->offset, b->info.byte_size);
      if (output_shapes && output_shapes[i]) memcpy(output_shapes[i], b->shape, b->info.rank * sizeof *b->shape);
      continue;
    }
    for (size_t d = 0; ok && d < b->info.rank; d++)
      ok = !b->dims[d] ? (shape[d] = b->shape[d], true) : eval_dim(m, b->trees[d], values, b->dims[d], 0, &shape[d]);
    for (size_t d = 0; ok && d < b->info.rank; d++)
      if (shape[d] < 0 || shape[d] > b->shape[d]) {
        damaged("output '%s' dim %zu is %" PRId64 " at this run's sizes, past its layout's %" PRId64, b->info.name, d,
                shape[d], b->shape[d]);
        ok = false;
      }
    if (!ok) break;
    copy_strided((uint8_t *)outputs[i], shape, m->memory + b->offset, b->shape, b->info.rank, b->info.element_size,
                 false);
    if (output_shapes && output_shapes[i]) memcpy(output_shapes[i], shape, b->info.rank * sizeof *shape);
  }
  atomic_flag_clear(&m->running);
  status = ok ? 0 : -1;
done:
  free(values);
  return status;
}

void kiln_free(kiln_model *m) { release(m); }
