// write_tiny_model.cpp — writes a tiny random-weight Llama .edgt (the fixture of the C example's
// ctest): write_tiny_model OUT.edgt
#include <cstdio>

#include "edgt_writer.h"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUT.edgt\n", argv[0]);
        return 2;
    }
    edgert_test::TinyLlamaSpec spec;
    spec.weight_type = edgert::DType::Q8_0;
    edgert_test::write_file(argv[1], edgert_test::make_tiny_llama(spec).build());
    return 0;
}
