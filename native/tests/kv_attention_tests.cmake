# kv_attention_tests.cmake — tests of the KV-cache rows and attention kernels (included from
# tests.cmake; also used alone by the aarch64 cross build in tests/test_kv_attention_arm.py).
foreach(t test_kv_attention_rows test_kv_attention)
  add_executable(${t} ${CMAKE_CURRENT_LIST_DIR}/${t}.cpp)
  target_link_libraries(${t} PRIVATE edgert_kernels)
  add_test(NAME ${t} COMMAND ${t})
endforeach()
