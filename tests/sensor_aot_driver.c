/* A C program on the board: runs an AOT-compiled edgert.sensor model without LLVM or Python.
 * Build against <model>.h and either link <model>.o (static) or, with -DUSE_DLOPEN, load the
 * <model>.so given as argv[3] at run time. Reads EDGERT_MODEL_INPUT0_ELEMENTS floats from argv[1],
 * writes EDGERT_MODEL_OUTPUT0_ELEMENTS floats to argv[2]. Used by tests/test_sensor_aot.py. */
#include <stdio.h>
#include <stdlib.h>
#include MODEL_HEADER
#ifdef USE_DLOPEN
#include <dlfcn.h>
#endif

typedef void (*model_fn)(void *const *, void *const *, void *);

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s IN.bin OUT.bin [MODEL.so]\n", argv[0]);
        return 2;
    }
    model_fn fn = edgert_model;
    unsigned long long ws_bytes = edgert_model_workspace_bytes;
#ifdef USE_DLOPEN
    void *lib = dlopen(argv[3], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
    fn = (model_fn)dlsym(lib, "edgert_model");
    const unsigned long long *wsp = dlsym(lib, "edgert_model_workspace_bytes");
    if (!fn || !wsp) { fprintf(stderr, "dlsym: %s\n", dlerror()); return 3; }
    ws_bytes = *wsp;
#endif
    if (ws_bytes != EDGERT_MODEL_WORKSPACE_BYTES) { fprintf(stderr, "workspace mismatch\n"); return 4; }
    float *in = malloc(sizeof(float) * EDGERT_MODEL_INPUT0_ELEMENTS);
    float *out = malloc(sizeof(float) * EDGERT_MODEL_OUTPUT0_ELEMENTS);
    void *ws = aligned_alloc(64, (ws_bytes + 63) / 64 * 64);
    FILE *f = fopen(argv[1], "rb");
    if (!in || !out || !ws || !f) return 5;
    if (fread(in, sizeof(float), EDGERT_MODEL_INPUT0_ELEMENTS, f) != EDGERT_MODEL_INPUT0_ELEMENTS) return 6;
    fclose(f);
    void *ins[1] = {in};
    void *outs[1] = {out};
    fn(ins, outs, ws);
    fn(ins, outs, ws); /* twice: the workspace carries nothing between calls */
    f = fopen(argv[2], "wb");
    if (!f || fwrite(out, sizeof(float), EDGERT_MODEL_OUTPUT0_ELEMENTS, f) != EDGERT_MODEL_OUTPUT0_ELEMENTS) return 7;
    fclose(f);
    free(in); free(out); free(ws);
    return 0;
}
