# examples.cmake — C programs that use libedgert through edgert.h alone.
add_executable(generate_ids ${CMAKE_CURRENT_LIST_DIR}/generate_ids.c)
target_link_libraries(generate_ids PRIVATE edgert)
add_executable(bench_decode ${CMAKE_CURRENT_LIST_DIR}/bench_decode.c)
target_link_libraries(bench_decode PRIVATE edgert)
add_executable(chat ${CMAKE_CURRENT_LIST_DIR}/chat.c)
target_link_libraries(chat PRIVATE edgert)
