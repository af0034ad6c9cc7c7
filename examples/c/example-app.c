/*
 * example-app: loads a Kiln artifact compiled for target 'native' and runs it through the C API (kiln.h), as
 * LibTorch's example-app does for TorchScript.
 *
 *   example-app model.kiln input.bin [output.bin] [--threads N]
 *
 * Prints the model's inputs and outputs, reads the first input's raw bytes (its dtype, row-major, as many bytes as
 * the input holds) from input.bin, fills any other input with zeros, runs, writes the first output's raw bytes to
 * output.bin when given, and prints the first values of the first output and, for a float one, its top-5 indices.
 * Exit status: 0, 1 for a failure of Kiln (its message on stderr, starting with its code), 2 for a wrong command line.
 *
 * Build (after scripts/build-c-runtime.sh, which writes build/c):
 *   cmake -S examples/c -B build/example-app -DKILN_DIR=$PWD/build/c && cmake --build build/example-app
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <kiln.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(void) {
  fprintf(stderr, "usage: example-app model.kiln input.bin [output.bin] [--threads N]\n");
  return 2;
}

static void print_info(const char *kind, const kiln_tensor_info *t) {
  printf("%s %s: %s[", kind, t->name, t->dtype);
  for (size_t d = 0; d < t->rank; d++) printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
  printf("] (%zu bytes)\n", t->byte_size);
}

/* The i-th element of a buffer of the tensor's dtype as a double (NaN for dtypes this example does not convert). */
static double element(const kiln_tensor_info *t, const void *data, size_t i) {
  const char *d = t->dtype;
  if (!strcmp(d, "float32")) return ((const float *)data)[i];
  if (!strcmp(d, "float64")) return ((const double *)data)[i];
  if (!strcmp(d, "int32")) return ((const int32_t *)data)[i];
  if (!strcmp(d, "int64")) return (double)((const int64_t *)data)[i];
  if (!strcmp(d, "int8")) return ((const int8_t *)data)[i];
  if (!strcmp(d, "uint8") || !strcmp(d, "bool")) return ((const uint8_t *)data)[i];
  return 0.0 / 0.0;
}

static int failed(const char *what) {
  fprintf(stderr, "example-app: %s%s\n", what ? what : "", kiln_last_error());
  return 1;
}

int main(int argc, char **argv) {
  const char *paths[3] = {NULL, NULL, NULL};
  int npaths = 0, threads = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads")) {
      if (++i == argc) return usage();
      char *end;
      long n = strtol(argv[i], &end, 10);
      if (*end || n < 1 || n > 1024) return usage();
      threads = (int)n;
    } else if (npaths < 3) {
      paths[npaths++] = argv[i];
    } else {
      return usage();
    }
  }
  if (npaths < 2) return usage();

  kiln_model *model = kiln_load(paths[0]);
  if (!model) return failed(NULL);
  int status = 1;
  size_t n_in = kiln_input_count(model), n_out = kiln_output_count(model);
  void **inputs = calloc(n_in ? n_in : 1, sizeof *inputs);
  void **outputs = calloc(n_out ? n_out : 1, sizeof *outputs);
  FILE *f = NULL;
  if (!inputs || !outputs) goto done;

  printf("model %s: native code for %s, %zu input(s), %zu output(s)\n", paths[0], kiln_cpu_level(model), n_in, n_out);
  for (size_t i = 0; i < n_in; i++) print_info("input ", kiln_input(model, i));
  for (size_t i = 0; i < n_out; i++) print_info("output", kiln_output(model, i));
  if (n_in == 0 || n_out == 0) {
    fprintf(stderr, "example-app: the model has no %s\n", n_in ? "output" : "input");
    goto done;
  }
  for (size_t i = 0; i < n_in; i++)
    if (!(inputs[i] = calloc(1, kiln_input(model, i)->byte_size + 1))) goto done;
  for (size_t i = 0; i < n_out; i++)
    if (!(outputs[i] = malloc(kiln_output(model, i)->byte_size + 1))) goto done;

  /* the first input, raw */
  const kiln_tensor_info *in = kiln_input(model, 0);
  if (!(f = fopen(paths[1], "rb"))) {
    perror(paths[1]);
    goto done;
  }
  size_t got = fread(inputs[0], 1, in->byte_size + 1, f);
  fclose(f);
  f = NULL;
  if (got != in->byte_size) {
    fprintf(stderr, "example-app: %s holds %s%zu bytes, input '%s' takes %zu (raw %s values, row-major)\n", paths[1],
            got > in->byte_size ? "more than " : "", got > in->byte_size ? in->byte_size : got, in->name,
            in->byte_size, in->dtype);
    goto done;
  }
  if (n_in > 1) fprintf(stderr, "example-app: inputs after the first are zeros\n");

  if (kiln_set_threads(model, threads) != 0) {
    status = failed(NULL);
    goto done;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (kiln_run(model, (const void *const *)inputs, outputs) != 0) {
    status = failed(NULL);
    goto done;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("ran on %d thread(s) in %.3f ms\n", kiln_threads(model),
         (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);

  const kiln_tensor_info *out = kiln_output(model, 0);
  if (npaths == 3) {
    if (!(f = fopen(paths[2], "wb")) || fwrite(outputs[0], 1, out->byte_size, f) != out->byte_size) {
      perror(paths[2]);
      goto done;
    }
    if (fclose(f) != 0) {
      f = NULL;
      perror(paths[2]);
      goto done;
    }
    f = NULL;
    printf("wrote %s (%zu bytes)\n", paths[2], out->byte_size);
  }
  printf("%s[:%zu] =", out->name, out->element_count < 8 ? out->element_count : 8);
  for (size_t i = 0; i < out->element_count && i < 8; i++) printf(" %.6g", element(out, outputs[0], i));
  printf("\n");
  if (!strcmp(out->dtype, "float32") || !strcmp(out->dtype, "float64")) {
    /* top-5 over all elements (the classes of a [1, N] classifier output) */
    size_t top[5];
    size_t k = 0;
    for (size_t i = 0; i < out->element_count; i++) {
      double v = element(out, outputs[0], i);
      size_t at = k;
      while (at > 0 && element(out, outputs[0], top[at - 1]) < v) at--;
      if (at >= 5) continue;
      if (k < 5) k++;
      memmove(top + at + 1, top + at, (k - 1 - at) * sizeof *top);
      top[at] = i;
    }
    printf("top-%zu:", k);
    for (size_t i = 0; i < k; i++) printf(" %zu (%.6g)", top[i], element(out, outputs[0], top[i]));
    printf("\n");
  }
  status = 0;

done:
  if (f) fclose(f);
  for (size_t i = 0; inputs && i < n_in; i++) free(inputs[i]);
  for (size_t i = 0; outputs && i < n_out; i++) free(outputs[i]);
  free(inputs);
  free(outputs);
  kiln_free(model);
  return status;
}
