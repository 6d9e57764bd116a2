# core.cmake — the runtime above the kernel layer: loader (core/), models (models/), KV cache,
# attention, sampler and context (runtime/), and the C API (api/).
#   edgert_core  static library, for the Python module and the native tests
#   edgert       shared library (libedgert) exporting only the C API, for apps to embed
# Both come from one set of object files, so the two can never diverge.
set(EDGERT_SRC_DIR ${CMAKE_CURRENT_LIST_DIR})

add_library(edgert_core_objects OBJECT
  ${EDGERT_SRC_DIR}/core/crc32.cpp
  ${EDGERT_SRC_DIR}/core/json.cpp
  ${EDGERT_SRC_DIR}/core/message_text.cpp
  ${EDGERT_SRC_DIR}/core/mapped_file.cpp
  ${EDGERT_SRC_DIR}/core/edgt_file.cpp
  ${EDGERT_SRC_DIR}/core/metadata.cpp
  ${EDGERT_SRC_DIR}/core/model_loader.cpp
  ${EDGERT_SRC_DIR}/models/llama_weights.cpp
  ${EDGERT_SRC_DIR}/models/llama.cpp
  ${EDGERT_SRC_DIR}/runtime/kv_cache.cpp
  ${EDGERT_SRC_DIR}/runtime/attention.cpp
  ${EDGERT_SRC_DIR}/runtime/activations.cpp
  ${EDGERT_SRC_DIR}/runtime/context.cpp
  ${EDGERT_SRC_DIR}/runtime/context_state.cpp
  ${EDGERT_SRC_DIR}/runtime/sampler.cpp
  ${EDGERT_SRC_DIR}/api/status_api.cpp
  ${EDGERT_SRC_DIR}/api/model_api.cpp
  ${EDGERT_SRC_DIR}/api/context_api.cpp
  ${EDGERT_SRC_DIR}/api/state_api.cpp
  ${EDGERT_SRC_DIR}/api/sampler_api.cpp
  ${EDGERT_SRC_DIR}/api/generate_api.cpp
)
target_include_directories(edgert_core_objects PUBLIC
  ${EDGERT_SRC_DIR}/../include
  ${EDGERT_SRC_DIR}
)
target_compile_definitions(edgert_core_objects PRIVATE
  EDGERT_BUILDING
  EDGERT_VERSION_STRING="${PROJECT_VERSION}"
)
target_link_libraries(edgert_core_objects PUBLIC edgert_kernels Threads::Threads)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(edgert_core_objects PRIVATE -Wall -Wextra)
endif()

add_library(edgert_core STATIC $<TARGET_OBJECTS:edgert_core_objects>)
target_include_directories(edgert_core PUBLIC ${EDGERT_SRC_DIR}/../include ${EDGERT_SRC_DIR})
target_link_libraries(edgert_core PUBLIC edgert_kernels Threads::Threads)

add_library(edgert SHARED $<TARGET_OBJECTS:edgert_core_objects>)
target_include_directories(edgert PUBLIC ${EDGERT_SRC_DIR}/../include)
target_link_libraries(edgert PRIVATE edgert_kernels Threads::Threads)
set_target_properties(edgert PROPERTIES
  VERSION ${PROJECT_VERSION}
  SOVERSION 1  # = EDGERT_ABI_VERSION
)
if(CMAKE_SYSTEM_NAME MATCHES "Linux|Android")
  # Keep symbols of the static kernel library (and any static runtime) out of the dynamic table:
  # the C API is the only interface apps may bind to.
  target_link_options(edgert PRIVATE -Wl,--exclude-libs,ALL
                      -Wl,--version-script=${EDGERT_SRC_DIR}/api/libedgert.map)
  set_property(TARGET edgert APPEND PROPERTY LINK_DEPENDS ${EDGERT_SRC_DIR}/api/libedgert.map)
  if(NOT EDGERT_SANITIZE AND NOT EDGERT_TSAN)
    target_link_options(edgert PRIVATE -Wl,--no-undefined)
  endif()
endif()

include(${EDGERT_SRC_DIR}/../examples/examples.cmake)
