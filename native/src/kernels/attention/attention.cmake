# attention.cmake — KV-cache rows and attention kernels, appended to target edgert_kernels
# (include after kernels.cmake). Each ISA file gets its own flags and is entered only after a
# runtime CPU check (attention_dispatch.cpp); never -march=native.
set(EDGERT_ATTENTION_DIR ${CMAKE_CURRENT_LIST_DIR})

target_sources(edgert_kernels PRIVATE
  ${EDGERT_ATTENTION_DIR}/kv_rows.cpp
  ${EDGERT_ATTENTION_DIR}/kv_hadamard.cpp
  ${EDGERT_ATTENTION_DIR}/attention_ref.cpp
  ${EDGERT_ATTENTION_DIR}/attention_dispatch.cpp
  ${EDGERT_ATTENTION_DIR}/attention_scalar.cpp
)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  target_sources(edgert_kernels PRIVATE
    ${EDGERT_ATTENTION_DIR}/attention_avx2.cpp
    ${EDGERT_ATTENTION_DIR}/attention_avx512.cpp
    ${EDGERT_ATTENTION_DIR}/attention_avx512_bf16.cpp
  )
  set_source_files_properties(${EDGERT_ATTENTION_DIR}/attention_avx2.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  set_source_files_properties(${EDGERT_ATTENTION_DIR}/attention_avx512.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx2;-mfma;-mf16c")
  set_source_files_properties(${EDGERT_ATTENTION_DIR}/attention_avx512_bf16.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx512bf16;-mavx2;-mfma;-mf16c")
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  target_sources(edgert_kernels PRIVATE ${EDGERT_ATTENTION_DIR}/attention_neon.cpp)
  set_source_files_properties(${EDGERT_ATTENTION_DIR}/attention_neon.cpp PROPERTIES
    COMPILE_OPTIONS "-march=armv8.2-a+dotprod")
endif()

# Micro-benchmark (a tool, not a test): decode attention per token per layer vs context length.
add_executable(bench_attention ${EDGERT_ATTENTION_DIR}/bench_attention.cpp)
target_link_libraries(bench_attention PRIVATE edgert_kernels)
