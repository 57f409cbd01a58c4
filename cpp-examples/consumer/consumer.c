/* consumer.c: a C program built with `pkg-config --cflags --libs farmem` only. */
#include <farmem.h>

#include <stdint.h>
#include <stdio.h>

int main(void) {
  fm_config_t cfg;
  fm_config_init(&cfg);
  cfg.local_bytes = 1 << 20;
  cfg.far_bytes = 64 << 20;
  cfg.workers = 1;
  fm_runtime_t *rt = NULL;
  fm_array_t *a = NULL;
  fm_scope_t *s = NULL;
  uint64_t sum = 0;
  if (fm_runtime_create(&cfg, &rt) != FM_OK || fm_array_create(rt, sizeof(uint64_t), 1000, &a) != FM_OK ||
      fm_scope_begin(rt, &s) != FM_OK) {
    printf("consumer.c: %s\n", fm_last_error());
    return 1;
  }
  for (uint64_t i = 0; i < 1000; ++i) {
    if (fm_array_set(a, s, i, &i, sizeof i) != FM_OK) return 1;
  }
  for (uint64_t i = 0; i < 1000; ++i) {
    uint64_t v = 0;
    if (fm_array_get(a, s, i, &v, sizeof v) != FM_OK) return 1;
    sum += v;
  }
  int ok = fm_scope_end(s) == FM_OK && fm_array_destroy(a) == FM_OK && fm_runtime_destroy(rt) == FM_OK;
  printf("consumer.c: sum %llu %s\n", (unsigned long long)sum, ok && sum == 499500 ? "OK" : "WRONG");
  return ok && sum == 499500 ? 0 : 1;
}
