/*
 * The parts of Kiln's C API that example-app does not reach (test/c-api.test.ts builds and runs it):
 *   api-check model.kiln
 * Loads the model from its path and from its bytes (kiln_load_memory), checks the metadata and the lookups by name,
 * the errors of wrong arguments (each with code E_INPUT and no side effect), and that two runs and the two loads give
 * the same bytes on an input of ones, also through kiln_run_shaped at the fixed shapes (refused at others). Prints
 * "ok" and exits 0, or prints each failed check and exits 1.
 */
#include <kiln.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                                                                \
  do {                                                                                                             \
    if (!(cond)) {                                                                                                 \
      printf("FAILED %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, kiln_last_error());                \
      failures++;                                                                                                  \
    }                                                                                                              \
  } while (0)

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* Runs `m` on inputs of ones (as bytes: 0x01 each; any dtype) into freshly allocated outputs. */
static void **run(kiln_model *m) {
  size_t ni = kiln_input_count(m), no = kiln_output_count(m);
  const void **in = calloc(ni + 1, sizeof *in);
  void **out = calloc(no + 1, sizeof *out);
  for (size_t i = 0; i < ni; i++) {
    void *b = malloc(kiln_input(m, i)->byte_size + 1);
    memset(b, 1, kiln_input(m, i)->byte_size + 1);
    in[i] = b;
  }
  for (size_t i = 0; i < no; i++) out[i] = calloc(1, kiln_output(m, i)->byte_size + 1);
  CHECK(kiln_run(m, in, out) == 0);
  for (size_t i = 0; i < ni; i++) free((void *)in[i]);
  free(in);
  return out;
}

static void free_outputs(kiln_model *m, void **out) {
  for (size_t i = 0; i < kiln_output_count(m); i++) free(out[i]);
  free(out);
}

static int same_outputs(kiln_model *m, void **a, void **b) {
  for (size_t i = 0; i < kiln_output_count(m); i++)
    if (memcmp(a[i], b[i], kiln_output(m, i)->byte_size) != 0) return 0;
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: api-check model.kiln\n");
    return 2;
  }
  /* errors without a model */
  CHECK(kiln_load(NULL) == NULL && starts_with(kiln_last_error(), "[E_INPUT] "));
  CHECK(kiln_load_memory("KILN", 4) == NULL && starts_with(kiln_last_error(), "[E_ARTIFACT] "));
  CHECK(kiln_load_memory(NULL, 0) == NULL && starts_with(kiln_last_error(), "[E_ARTIFACT] "));
  CHECK(kiln_run(NULL, NULL, NULL) != 0 && starts_with(kiln_last_error(), "[E_INPUT] "));
  CHECK(kiln_input_count(NULL) == 0 && kiln_input(NULL, 0) == NULL);
  kiln_free(NULL);

  kiln_model *m = kiln_load(argv[1]);
  CHECK(m != NULL);
  if (!m) return 1;
  CHECK(kiln_threads(m) == 1);
  CHECK(kiln_cpu_level(m) && starts_with(kiln_cpu_level(m), "x86-64"));

  /* metadata */
  CHECK(kiln_input_count(m) >= 1 && kiln_output_count(m) >= 1);
  for (size_t i = 0; i < kiln_input_count(m); i++) {
    const kiln_tensor_info *t = kiln_input(m, i);
    size_t n = 1;
    for (size_t d = 0; d < t->rank; d++) n *= (size_t)t->shape[d];
    CHECK(t->name && t->name[0] && t->dtype && t->element_size > 0);
    CHECK(n == t->element_count && t->byte_size == n * t->element_size);
    CHECK(kiln_input_index(m, t->name) == (ptrdiff_t)i);
    if (!strcmp(t->dtype, "float32")) CHECK(t->element_size == 4);
    CHECK(t->dims == NULL); /* fixed shapes */
  }
  CHECK(kiln_symbol_count(m) == 0);
  CHECK(kiln_symbol(m, 0, NULL, NULL) == NULL && starts_with(kiln_last_error(), "[E_INPUT] "));
  for (size_t i = 0; i < kiln_output_count(m); i++)
    CHECK(kiln_output_index(m, kiln_output(m, i)->name) == (ptrdiff_t)i);
  CHECK(kiln_input_index(m, "no such input") == -1 && starts_with(kiln_last_error(), "[E_INPUT] "));
  CHECK(strstr(kiln_last_error(), kiln_input(m, 0)->name) != NULL); /* names the inputs there are */
  CHECK(kiln_output_index(m, NULL) == -1 && starts_with(kiln_last_error(), "[E_INPUT] "));
  CHECK(kiln_input(m, kiln_input_count(m)) == NULL && starts_with(kiln_last_error(), "[E_INPUT] "));
  CHECK(kiln_output(m, kiln_output_count(m)) == NULL && starts_with(kiln_last_error(), "[E_INPUT] "));

  /* wrong arguments: E_INPUT, nothing changes */
  CHECK(kiln_set_threads(m, 0) != 0 && starts_with(kiln_last_error(), "[E_INPUT] "));
  CHECK(kiln_threads(m) == 1);
  CHECK(kiln_run(m, NULL, NULL) != 0 && starts_with(kiln_last_error(), "[E_INPUT] "));
  {
    const void *in[16] = {0};
    void *out[16] = {0};
    CHECK(kiln_run(m, in, out) != 0 && starts_with(kiln_last_error(), "[E_INPUT] "));
  }

  /* runs: the same bytes twice, at 2 threads, and from a model loaded from memory */
  void **a = run(m), **b = run(m);
  CHECK(same_outputs(m, a, b));
  CHECK(kiln_set_threads(m, 2) == 0 && kiln_threads(m) == 2);
  void **c = run(m);
  CHECK(same_outputs(m, a, c));

  /* kiln_run_shaped runs a model of fixed shapes at those shapes, and refuses others */
  {
    size_t ni = kiln_input_count(m), no = kiln_output_count(m);
    const void **in = calloc(ni + 1, sizeof *in);
    const int64_t **shapes = calloc(ni + 1, sizeof *shapes);
    void **out = calloc(no + 1, sizeof *out);
    int64_t **out_shapes = calloc(no + 1, sizeof *out_shapes);
    for (size_t i = 0; i < ni; i++) {
      void *x = malloc(kiln_input(m, i)->byte_size + 1);
      memset(x, 1, kiln_input(m, i)->byte_size + 1);
      in[i] = x;
      shapes[i] = kiln_input(m, i)->shape;
    }
    for (size_t i = 0; i < no; i++) {
      out[i] = calloc(1, kiln_output(m, i)->byte_size + 1);
      out_shapes[i] = calloc(kiln_output(m, i)->rank + 1, sizeof **out_shapes);
    }
    CHECK(kiln_run_shaped(m, in, shapes, out, out_shapes) == 0);
    CHECK(same_outputs(m, a, out));
    for (size_t i = 0; i < no; i++)
      CHECK(memcmp(out_shapes[i], kiln_output(m, i)->shape, kiln_output(m, i)->rank * sizeof(int64_t)) == 0);
    CHECK(kiln_run_shaped(m, in, NULL, out, NULL) != 0 && starts_with(kiln_last_error(), "[E_INPUT] "));
    if (kiln_input(m, 0)->rank > 0 && kiln_input(m, 0)->rank <= 64) {
      int64_t wrong[64];
      memcpy(wrong, kiln_input(m, 0)->shape, kiln_input(m, 0)->rank * sizeof *wrong);
      wrong[0] += 1;
      shapes[0] = wrong;
      CHECK(kiln_run_shaped(m, in, shapes, out, NULL) != 0 && starts_with(kiln_last_error(), "[E_INPUT] "));
      CHECK(strstr(kiln_last_error(), "dim 0") != NULL);
    }
    for (size_t i = 0; i < ni; i++) free((void *)in[i]);
    for (size_t i = 0; i < no; i++) free(out_shapes[i]);
    free(in);
    free(shapes);
    free(out_shapes);
    free_outputs(m, out);
  }

  FILE *f = fopen(argv[1], "rb");
  CHECK(f != NULL);
  if (f) {
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *bytes = malloc((size_t)size);
    CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    kiln_model *m2 = kiln_load_memory(bytes, (size_t)size);
    free(bytes); /* the model keeps no reference to them */
    CHECK(m2 != NULL);
    if (m2) {
      void **d = run(m2);
      CHECK(same_outputs(m, a, d));
      free_outputs(m2, d);
      kiln_free(m2);
    }
  }
  free_outputs(m, a);
  free_outputs(m, b);
  free_outputs(m, c);
  kiln_free(m);
  if (failures) return 1;
  printf("ok\n");
  return 0;
}
