# tests.cmake — native tests (ctest). Each is an executable that exits nonzero on failure.
include(${CMAKE_CURRENT_LIST_DIR}/kernel_tests.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/kv_attention_tests.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/kv_cache_tests.cmake)

add_library(edgert_test_support STATIC
  ${CMAKE_CURRENT_LIST_DIR}/edgt_writer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/reference_llama.cpp
)
target_link_libraries(edgert_test_support PUBLIC edgert_core)
target_include_directories(edgert_test_support PUBLIC ${CMAKE_CURRENT_LIST_DIR})

foreach(t test_json_crc test_loader_bad_input test_hostile_files test_api_errors test_sampler test_forward)
  add_executable(${t} ${CMAKE_CURRENT_LIST_DIR}/${t}.cpp)
  target_link_libraries(${t} PRIVATE edgert_test_support)
  add_test(NAME ${t} COMMAND ${t})
  # UBSan only reports by default; under EDGERT_SANITIZE a report must fail the test.
  set_tests_properties(${t} PROPERTIES ENVIRONMENT "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
endforeach()

# The C example, linked against libedgert alone, generates from a tiny model written here:
# 5 new tokens after a 3-token prompt leave 3 + 5 - 1 tokens in the cache (edgert_generate).
add_executable(write_tiny_model ${CMAKE_CURRENT_LIST_DIR}/write_tiny_model.cpp)
target_link_libraries(write_tiny_model PRIVATE edgert_test_support)
add_test(NAME write_tiny_model COMMAND write_tiny_model ${CMAKE_CURRENT_BINARY_DIR}/tiny_q8.edgt)
set_tests_properties(write_tiny_model PROPERTIES FIXTURES_SETUP tiny_model)
add_test(NAME example_generate_ids
         COMMAND generate_ids ${CMAKE_CURRENT_BINARY_DIR}/tiny_q8.edgt 5 1 17 42)
set_tests_properties(example_generate_ids PROPERTIES
  FIXTURES_REQUIRED tiny_model
  PASS_REGULAR_EXPRESSION "^[0-9]+ [0-9]+ [0-9]+ [0-9]+ [0-9]+ \ngenerated 5 tokens, 7 in the cache")
add_test(NAME example_generate_ids_bad_token
         COMMAND generate_ids ${CMAKE_CURRENT_BINARY_DIR}/tiny_q8.edgt 5 1 100000)
set_tests_properties(example_generate_ids_bad_token PROPERTIES
  FIXTURES_REQUIRED tiny_model
  PASS_REGULAR_EXPRESSION "EDGERT_ERR_TOKEN")

# One deliberate bug per sanitizer (not a test: tests/test_native.py runs it in the sanitized
# builds and expects each to fail).
add_executable(sanitizer_canary ${CMAKE_CURRENT_LIST_DIR}/sanitizer_canary.cpp)
target_link_libraries(sanitizer_canary PRIVATE Threads::Threads)

# Load cost on a real file (not a test): docs/security.md's figures. load_cost MODEL.edgt [verify]
add_executable(load_cost ${CMAKE_CURRENT_LIST_DIR}/../tools/load_cost.c)
target_link_libraries(load_cost PRIVATE edgert)
