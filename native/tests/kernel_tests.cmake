# kernel_tests.cmake — the kernel layer's native tests (included from tests.cmake; also used
# alone by the aarch64 cross build in tests/test_kernels_arm.py).
foreach(t test_kernels_ref test_kernels_isa)
  add_executable(${t} ${CMAKE_CURRENT_LIST_DIR}/${t}.cpp)
  target_link_libraries(${t} PRIVATE edgert_kernels)
  add_test(NAME ${t} COMMAND ${t})
endforeach()

# Not a test: the runtime's dequantizer on blocks from a file, compared with gguf.quants.dequantize
# by tests/test_native.py and (under qemu-aarch64) tests/test_kernels_arm.py.
add_executable(dequant_rows ${CMAKE_CURRENT_LIST_DIR}/dequant_rows.cpp)
target_link_libraries(dequant_rows PRIVATE edgert_kernels)

# The AMX prefill kernel on a scalar tile model (any AVX-512 CPU) and on real tiles where present.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  add_executable(test_kernels_amx ${CMAKE_CURRENT_LIST_DIR}/test_kernels_amx.cpp
    ${CMAKE_CURRENT_LIST_DIR}/amx_tile_model.cpp)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/amx_tile_model.cpp PROPERTIES
    COMPILE_OPTIONS "${EDGERT_AVX512_FLAGS}")
  target_link_libraries(test_kernels_amx PRIVATE edgert_kernels)
  add_test(NAME test_kernels_amx COMMAND test_kernels_amx)
endif()

# EDGERT_ISA must pick the table at start-up (the reference test checks current_isa() first).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  add_test(NAME test_kernels_env_isa COMMAND test_kernels_ref)
  set_tests_properties(test_kernels_env_isa PROPERTIES ENVIRONMENT "EDGERT_ISA=avx2")
endif()

# Benchmark (not a test): GFLOP/s and GB/s per ISA on SmolLM2 / TinyLlama shapes.
add_executable(bench_matmul ${CMAKE_CURRENT_LIST_DIR}/../tools/bench_matmul.cpp)
target_link_libraries(bench_matmul PRIVATE edgert_kernels)
