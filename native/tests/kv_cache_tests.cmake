# kv_cache_tests.cmake — tests of the runtime's KV cache and context state (included from
# tests.cmake): attention wiring vs attention_ref, trim, quantized-cache quality, memory budget,
# save/load.
foreach(t test_kv_cache test_kv_state)
  add_executable(${t} ${CMAKE_CURRENT_LIST_DIR}/${t}.cpp)
  target_link_libraries(${t} PRIVATE edgert_test_support)
  add_test(NAME ${t} COMMAND ${t})
  set_tests_properties(${t} PROPERTIES ENVIRONMENT "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
endforeach()
