/*
 * kiln.h: the C API of Kiln's native artifacts.
 *
 * Loads a .kiln file compiled with `kiln compile MODEL.onnx --target native` and runs its native code (an x86-64
 * shared library inside the artifact) from C or C++, without Node. Link with -lkiln (libkiln.so or libkiln.a, the
 * latter also with -ljansson -lcrypto -ldl); scripts/build-c-runtime.sh builds both.
 *
 *   kiln_model *m = kiln_load("model.kiln");
 *   if (!m) { fprintf(stderr, "%s\n", kiln_last_error()); return 1; }
 *   const kiln_tensor_info *in = kiln_input(m, 0), *out = kiln_output(m, 0);
 *   float *x = calloc(in->element_count, sizeof *x), *y = malloc(out->byte_size);
 *   const void *inputs[] = {x};
 *   void *outputs[] = {y};
 *   kiln_set_threads(m, 4);
 *   if (kiln_run(m, inputs, outputs) != 0) fprintf(stderr, "%s\n", kiln_last_error());
 *   kiln_free(m);
 *
 * Errors: a function that fails returns NULL (kiln_load), -1 (kiln_*_index) or non-zero (kiln_run,
 * kiln_set_threads) and sets the calling thread's last error, a message that starts with a stable code and says
 * what to do, e.g. "[E_ARTIFACT] artifact is damaged: checksum mismatch (truncated or altered). recompile the model
 * with kiln compile; do not edit or truncate .kiln files". The codes:
 *   E_IO           the file cannot be opened or read
 *   E_ARTIFACT     not a Kiln artifact, another format version, damaged (truncated, altered, a header field out of
 *                  bounds), no native code (compiled for another target), or its library does not load
 *   E_UNSUPPORTED  the artifact needs what this runtime or machine lacks: CPU features (the message names them), or
 *                  native code for another OS or architecture
 *   E_DYNAMIC      a Loop whose scan outputs were sized at compile time stopped early (its message says what to do)
 *   E_INPUT        a wrong argument (NULL model or buffer, threads < 1, an index past the count, no such name, a
 *                  model that is already running on another thread, an input shape the model was not compiled for)
 *   E_SHAPE        the model's memory cannot be allocated
 *
 * Threads: the functions may be called from any thread. One model runs one kiln_run at a time (a second concurrent
 * call on the same model fails with E_INPUT); separate models, even of the same file, run concurrently.
 * Memory: a model holds the memory plan of its artifact (weights, inputs, outputs, intermediates) from kiln_load
 * to kiln_free; the file is not kept open.
 */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

/** Version of this C API (major * 10000 + minor * 100 + patch). */
#define KILN_C_API_VERSION 200

/** A loaded model: opaque. */
typedef struct kiln_model kiln_model;

/** A graph input or output. Owned by the model: valid until kiln_free. */
typedef struct kiln_tensor_info {
  /** The name in the ONNX graph. */
  const char *name;
  /** Element type as the artifact header names it: "float32", "float16", "int64", "uint8", "bool", ... */
  const char *dtype;
  /** Bytes per element (4 for float32). */
  size_t element_size;
  /** Number of dimensions (0 for a scalar). */
  size_t rank;
  /** The dims, `rank` of them (row-major, the last dim contiguous). */
  const int64_t *shape;
  /** Product of the dims. */
  size_t element_count;
  /** Bytes of a buffer that holds the tensor: element_count * element_size. */
  size_t byte_size;
  /**
   * NULL, unless a dim is a run-time size (a model compiled with `--dim NAME=LO..HI`): then per dim NULL where it
   * is fixed, or the size's name (`"batch"`, `"sequence"`) or expression of the sizes (`"past + sequence"`). Such a
   * dim's `shape` entry is its upper bound, and element_count / byte_size those of the bounds: a buffer that holds
   * the tensor at any sizes in range.
   */
  const char *const *dims;
} kiln_tensor_info;

/**
 * Reads, checks and loads the artifact at `path`: its prefix, its SHA-256, every header field the runtime reads,
 * the CPU features its code needs, then opens its native library and copies its weights into the model's memory.
 * Returns NULL on failure (kiln_last_error says why). Threads default to 1.
 */
KILN_API kiln_model *kiln_load(const char *path);

/** As kiln_load, from the bytes of an artifact in memory (`size` bytes at `data`; not kept after the call). */
KILN_API kiln_model *kiln_load_memory(const void *data, size_t size);

/**
 * The message of the calling thread's last failure, "[CODE] what happened. what to do" (as KilnError writes it); "" when none has failed. Valid
 * until this thread's next call that fails.
 */
KILN_API const char *kiln_last_error(void);

KILN_API size_t kiln_input_count(const kiln_model *model);
KILN_API size_t kiln_output_count(const kiln_model *model);

/** The i-th input / output (the order of the ONNX graph and of kiln_run's buffers), or NULL past the count. */
KILN_API const kiln_tensor_info *kiln_input(const kiln_model *model, size_t i);
KILN_API const kiln_tensor_info *kiln_output(const kiln_model *model, size_t i);

/** The index of the input / output named `name`, or -1 (with E_INPUT) when there is none. */
KILN_API ptrdiff_t kiln_input_index(const kiln_model *model, const char *name);
KILN_API ptrdiff_t kiln_output_index(const kiln_model *model, const char *name);

/**
 * The threads each kiln_run uses for the parallel parts of the model (an OpenMP team); at least 1, default 1.
 * Artifacts from Kilns before native threads run on one thread whatever this says. Returns 0, or non-zero (E_INPUT).
 */
KILN_API int kiln_set_threads(kiln_model *model, int threads);

/** The threads kiln_set_threads set (1 until then). */
KILN_API int kiln_threads(const kiln_model *model);

/** The CPU level the native code was compiled for ("x86-64", "x86-64-v3", "x86-64-v4"). */
KILN_API const char *kiln_cpu_level(const kiln_model *model);

/**
 * Runs the model: `inputs[i]` points to kiln_input(model, i)->byte_size bytes of input i, `outputs[i]` to
 * kiln_output(model, i)->byte_size bytes that receive output i (the input and output order of kiln_input /
 * kiln_output). Element types and shapes are the compiled ones: the caller converts. Returns 0, or non-zero with
 * kiln_last_error set (no run happens then). A model with run-time sizes runs with kiln_run_shaped instead (E_INPUT).
 */
KILN_API int kiln_run(kiln_model *model, const void *const *inputs, void *const *outputs);

/**
 * Run-time sizes: how many the model takes (0 for a model compiled with fixed shapes), and the i-th one's name with
 * the range it was compiled for (`min`, `max`, either may be NULL), or NULL past the count.
 */
KILN_API size_t kiln_symbol_count(const kiln_model *model);
KILN_API const char *kiln_symbol(const kiln_model *model, size_t i, int64_t *min, int64_t *max);

/**
 * Runs the model on inputs of the given shapes: `input_shapes[i]` points to kiln_input(model, i)->rank dims of input
 * i, whose data `inputs[i]` holds dense (row-major); the run-time sizes come from them (each in its range, the same
 * wherever it appears, fixed dims as compiled: E_INPUT otherwise). Output i is written dense at this run's shape
 * into `outputs[i]`, which holds kiln_output(model, i)->byte_size bytes (the bounds'), and its dims into
 * `output_shapes[i]` (rank entries) where `output_shapes` and its entry are not NULL. Sizes counted from the data
 * (NonZero's count) are known after the run, so only output_shapes says them. Also runs a model without run-time
 * sizes (its shapes checked). Returns 0, or non-zero with kiln_last_error set.
 */
KILN_API int kiln_run_shaped(kiln_model *model, const void *const *inputs, const int64_t *const *input_shapes,
                             void *const *outputs, int64_t *const *output_shapes);

/** Releases the model, its memory and its library. NULL is allowed. */
KILN_API void kiln_free(kiln_model *model);

#ifdef __cplusplus
}
#endif

#endif /* KILN_H */
