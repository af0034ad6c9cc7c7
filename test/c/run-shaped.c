/*
 * Runs a Kiln artifact with run-time sizes through kiln_run_shaped (test/c-api.test.ts builds and runs it):
 *   run-shaped model.kiln OUT_DIR [--threads N] IN0.bin D0,D1,... [IN1.bin D0,D1,... ...]
 * Each input's raw bytes (dense, row-major, at the shape that follows it) are read from its file; the program prints
 * the model's run-time sizes ("size NAME MIN..MAX"), runs, then prints each output's shape ("output NAME [D0,D1]")
 * and writes its dense bytes to OUT_DIR/output.I.bin. Exit status: 0, 1 for a failure of Kiln (its message on
 * stderr), 2 for a wrong command line or file.
 */
#include <kiln.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
  fprintf(stderr, "usage: run-shaped model.kiln OUT_DIR [--threads N] IN0.bin D0,D1,... [IN1.bin D0,D1,...]...\n");
  return 2;
}

/* "D0,D1,..." into `rank` dims; false when it has another count or a bad number. */
static int parse_shape(const char *text, size_t rank, int64_t *dims) {
  size_t n = 0;
  const char *p = text;
  while (*p) {
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p || n == rank) return 0;
    dims[n++] = v;
    p = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return 0;
  }
  return n == rank;
}

int main(int argc, char **argv) {
  if (argc < 3) return usage();
  int arg = 3, threads = 1;
  if (argc > 4 && !strcmp(argv[3], "--threads")) {
    threads = atoi(argv[4]);
    arg = 5;
  }
  kiln_model *m = kiln_load(argv[1]);
  if (!m) {
    fprintf(stderr, "run-shaped: %s\n", kiln_last_error());
    return 1;
  }
  size_t ni = kiln_input_count(m), no = kiln_output_count(m);
  if ((size_t)(argc - arg) != 2 * ni) {
    kiln_free(m);
    return usage();
  }
  for (size_t s = 0; s < kiln_symbol_count(m); s++) {
    int64_t lo, hi;
    const char *name = kiln_symbol(m, s, &lo, &hi);
    printf("size %s %lld..%lld\n", name, (long long)lo, (long long)hi);
  }
  const void **inputs = calloc(ni + 1, sizeof *inputs);
  int64_t **shapes = calloc(ni + 1, sizeof *shapes);
  void **outputs = calloc(no + 1, sizeof *outputs);
  int64_t **out_shapes = calloc(no + 1, sizeof *out_shapes);
  int status = 2;
  for (size_t i = 0; i < ni; i++) {
    const kiln_tensor_info *in = kiln_input(m, i);
    shapes[i] = calloc(in->rank + 1, sizeof **shapes);
    if (!parse_shape(argv[arg + 2 * i + 1], in->rank, shapes[i])) {
      fprintf(stderr, "run-shaped: '%s' is not %zu dims for input '%s'\n", argv[arg + 2 * i + 1], in->rank, in->name);
      goto done;
    }
    FILE *f = fopen(argv[arg + 2 * i], "rb");
    if (!f) {
      perror(argv[arg + 2 * i]);
      goto done;
    }
    void *data = calloc(1, in->byte_size + 1);
    size_t got = fread(data, 1, in->byte_size + 1, f);
    fclose(f);
    inputs[i] = data;
    (void)got; /* a shape the model refuses is the runtime's to report */
  }
  for (size_t i = 0; i < no; i++) {
    outputs[i] = calloc(1, kiln_output(m, i)->byte_size + 1);
    out_shapes[i] = calloc(kiln_output(m, i)->rank + 1, sizeof **out_shapes);
  }
  status = 1;
  if (kiln_set_threads(m, threads) != 0 ||
      kiln_run_shaped(m, inputs, (const int64_t *const *)shapes, outputs, out_shapes) != 0) {
    fprintf(stderr, "run-shaped: %s\n", kiln_last_error());
    goto done;
  }
  status = 0;
  for (size_t i = 0; i < no; i++) {
    const kiln_tensor_info *out = kiln_output(m, i);
    size_t count = 1;
    printf("output %s [", out->name);
    for (size_t d = 0; d < out->rank; d++) {
      printf("%s%lld", d ? "," : "", (long long)out_shapes[i][d]);
      count *= (size_t)out_shapes[i][d];
    }
    printf("]\n");
    char path[4096];
    snprintf(path, sizeof path, "%s/output.%zu.bin", argv[2], i);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(outputs[i], out->element_size, count, f) != count || fclose(f) != 0) {
      perror(path);
      status = 2;
    }
  }
done:
  for (size_t i = 0; i < ni; i++) {
    free((void *)inputs[i]);
    free(shapes[i]);
  }
  for (size_t i = 0; i < no; i++) {
    free(outputs[i]);
    free(out_shapes[i]);
  }
  free(inputs);
  free(shapes);
  free(outputs);
  free(out_shapes);
  kiln_free(m);
  return status;
}
