# kernels.cmake — target edgert_kernels (static): dtypes, scalar reference kernels, per-ISA
# kernels, dispatch, matmul driver, thread pool.
#
# Each ISA file is compiled with its own flags (set_source_files_properties) and only entered
# after a runtime CPU check, so one build runs on any CPU of its architecture. Never -march=native.
set(EDGERT_KERNELS_DIR ${CMAKE_CURRENT_LIST_DIR})

add_library(edgert_kernels STATIC
  ${EDGERT_KERNELS_DIR}/dtypes.cpp
  ${EDGERT_KERNELS_DIR}/cpu_features.cpp
  ${EDGERT_KERNELS_DIR}/dispatch.cpp
  ${EDGERT_KERNELS_DIR}/matmul.cpp
  ${EDGERT_KERNELS_DIR}/weight_layout.cpp
  ${EDGERT_KERNELS_DIR}/elementwise.cpp
  ${EDGERT_KERNELS_DIR}/ref/quantize_ref.cpp
  ${EDGERT_KERNELS_DIR}/ref/dot_ref.cpp
  ${EDGERT_KERNELS_DIR}/ref/elementwise_ref.cpp
  ${EDGERT_KERNELS_DIR}/ref/dequant_ref.cpp
  ${EDGERT_KERNELS_DIR}/ref/qblock_ref.cpp
  ${EDGERT_KERNELS_DIR}/packed_qformat.cpp
  ${EDGERT_KERNELS_DIR}/ref/scalar_table.cpp
  ${EDGERT_KERNELS_DIR}/../runtime/thread_pool.cpp
)
target_include_directories(edgert_kernels PUBLIC ${EDGERT_KERNELS_DIR}/..)
# Values equal to gguf.quants.dequantize's need numpy's rounding: no fused multiply-adds there.
set_source_files_properties(${EDGERT_KERNELS_DIR}/ref/dequant_ref.cpp PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")
include(${EDGERT_KERNELS_DIR}/attention/attention.cmake)
target_link_libraries(edgert_kernels PUBLIC Threads::Threads)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(_x86 ${EDGERT_KERNELS_DIR}/x86)
  target_sources(edgert_kernels PRIVATE
    ${_x86}/kernels_avx2.cpp ${_x86}/kernels_avxvnni.cpp ${_x86}/kernels_avx512vnni.cpp)
  set_source_files_properties(${_x86}/kernels_avx2.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  set_source_files_properties(${_x86}/kernels_avxvnni.cpp PROPERTIES
    COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mavxvnni")
  # Also the AMX table's (its tiles are inline asm: no -mamx flags) and the AMX tile-model test's.
  set(EDGERT_AVX512_FLAGS "-mavx2;-mfma;-mf16c;-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx512vbmi;-mgfni")
  set_source_files_properties(${_x86}/kernels_avx512vnni.cpp PROPERTIES
    COMPILE_OPTIONS "${EDGERT_AVX512_FLAGS}")
  target_compile_definitions(edgert_kernels PRIVATE EDGERT_KERNELS_X86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(_arm ${EDGERT_KERNELS_DIR}/arm)
  target_sources(edgert_kernels PRIVATE ${_arm}/kernels_neon.cpp ${_arm}/kernels_neon_dotprod.cpp
    ${_arm}/kernels_neon_i8mm.cpp)
  # Baseline armv8-a already has NEON; dotprod is armv8.2-a's optional SDOT/UDOT, i8mm
  # armv8.6-a's SMMLA (optional from armv8.2-a).
  set_source_files_properties(${_arm}/kernels_neon_dotprod.cpp PROPERTIES
    COMPILE_OPTIONS "-march=armv8.2-a+dotprod")
  set_source_files_properties(${_arm}/kernels_neon_i8mm.cpp PROPERTIES
    COMPILE_OPTIONS "-march=armv8.2-a+dotprod+i8mm")
  target_compile_definitions(edgert_kernels PRIVATE EDGERT_KERNELS_NEON)
endif()
