# The pybind11 module edgert._edgert: a thin one-to-one binding of edgert.h over edgert_core.
# Included from native/CMakeLists.txt when EDGERT_BUILD_PYTHON=ON. pybind11 is found through the
# running interpreter (`python -m pybind11 --cmakedir`) so a pip build environment needs no extra
# hints; setup.py passes Python_EXECUTABLE so the module matches the interpreter that builds it.
find_package(Python 3.8 REQUIRED COMPONENTS Interpreter Development.Module)

if(NOT pybind11_DIR)
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -m pybind11 --cmakedir
    OUTPUT_VARIABLE _edgert_pybind11_dir
    OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _edgert_pybind11_rc)
  if(_edgert_pybind11_rc EQUAL 0)
    set(pybind11_DIR "${_edgert_pybind11_dir}")
  endif()
endif()
find_package(pybind11 CONFIG REQUIRED)

pybind11_add_module(_edgert MODULE ${CMAKE_CURRENT_LIST_DIR}/edgert_pybind.cpp)
target_link_libraries(_edgert PRIVATE edgert_core)
target_include_directories(_edgert PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/include
  ${CMAKE_CURRENT_SOURCE_DIR}/src)
if(EDGERT_STATIC_RUNTIME AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_link_options(_edgert PRIVATE -static-libstdc++ -static-libgcc)
endif()
