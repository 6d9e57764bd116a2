/* load_cost.c — what edgert_model_load costs on one file, through edgert.h alone: wall time,
 * peak resident memory (VmHWM) and its growth over the process before the load, with and without
 * verify_checksums. The figures docs/security.md quotes for its memory and time bounds.
 *   load_cost MODEL.edgt [verify 0|1]
 * One load per process, so VmHWM is that load's peak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgert.h"

static long status_kb(const char* key) {
    FILE* f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, strlen(key)) == 0) kb = strtol(line + strlen(key), NULL, 10);
    }
    if (f) fclose(f);
    return kb;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.edgt [verify 0|1]\n", argv[0]);
        return 2;
    }
    edgert_model_params p = edgert_model_default_params();
    p.verify_checksums = argc > 2 ? atoi(argv[2]) : 0;
    const long before = status_kb("VmRSS:");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    edgert_model* m = NULL;
    const edgert_status st = edgert_model_load(argv[1], &p, &m);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    const long peak = status_kb("VmHWM:");
    edgert_model_info info;
    edgert_model_layout layout;
    memset(&info, 0, sizeof info);
    memset(&layout, 0, sizeof layout);
    if (st == EDGERT_OK) {
        edgert_model_get_info(m, &info);
        edgert_model_get_layout(m, &layout);
    }
    printf("%s verify=%d: %s in %.3f s; file %llu bytes, packed copies %llu bytes; peak RSS %ld KiB "
           "(+%ld KiB over the process before the load)%s%s\n",
           argv[1], p.verify_checksums, edgert_status_string(st), s,
           (unsigned long long)info.file_size, (unsigned long long)layout.bytes, peak, peak - before,
           st == EDGERT_OK ? "" : ": ", st == EDGERT_OK ? "" : edgert_last_error());
    edgert_model_free(m);
    return st == EDGERT_OK ? 0 : 1;
}
