# tests.cmake — native tests (ctest). Each is an executable that exits nonzero on failure.
include(${CMAKE_CURRENT_LIST_DIR}/kernel_tests.cmake)

add_library(edgert_test_support STATIC ${CMAKE_CURRENT_LIST_DIR}/edgt_writer.cpp)
target_link_libraries(edgert_test_support PUBLIC edgert_core)
target_include_directories(edgert_test_support PUBLIC ${CMAKE_CURRENT_LIST_DIR})

foreach(t test_json_crc test_loader_bad_input)
  add_executable(${t} ${CMAKE_CURRENT_LIST_DIR}/${t}.cpp)
  target_link_libraries(${t} PRIVATE edgert_test_support)
  add_test(NAME ${t} COMMAND ${t})
endforeach()
