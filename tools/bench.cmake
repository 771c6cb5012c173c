# tools/bench.cmake -- build settings of `mha bench`. Its sources
# (mha_bench.c, bench_*.c) join the mha_cli target through the glob of
# tools/CMakeLists.txt; this file gives bench_context.c, as compile
# definitions, what the bench reports in its context header: the C compiler,
# the flags and build type of this build, and the git commit ("unknown"
# outside a git work tree; CMake re-runs when HEAD moves).

find_package(Git QUIET)
set(_mha_bench_commit unknown)
if(GIT_FOUND)
  execute_process(
    COMMAND ${GIT_EXECUTABLE} rev-parse --short HEAD
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    OUTPUT_VARIABLE _mha_bench_out
    OUTPUT_STRIP_TRAILING_WHITESPACE
    ERROR_QUIET
    RESULT_VARIABLE _mha_bench_rc)
  if(_mha_bench_rc EQUAL 0 AND _mha_bench_out)
    set(_mha_bench_commit ${_mha_bench_out})
    # Re-run this when HEAD moves (a commit or a checkout), so a rebuild never
    # reports an older commit than the one it was built from.
    execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --absolute-git-dir
      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} OUTPUT_VARIABLE _mha_git_dir
      OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    execute_process(COMMAND ${GIT_EXECUTABLE} symbolic-ref -q HEAD
      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} OUTPUT_VARIABLE _mha_git_ref
      OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    foreach(_f HEAD ${_mha_git_ref} packed-refs)
      if(_mha_git_dir AND EXISTS ${_mha_git_dir}/${_f})
        set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_mha_git_dir}/${_f})
      endif()
    endforeach()
  endif()
endif()

string(TOUPPER "${CMAKE_BUILD_TYPE}" _mha_bench_bt)
set(_mha_bench_flags "${CMAKE_C_FLAGS} ${CMAKE_C_FLAGS_${_mha_bench_bt}}")
string(STRIP "${_mha_bench_flags}" _mha_bench_flags)
# quotes would need escaping through every generator: show them as '
string(REPLACE "\"" "'" _mha_bench_flags "${_mha_bench_flags}")
if(NOT CMAKE_BUILD_TYPE)
  set(_mha_bench_bt_name none)
else()
  set(_mha_bench_bt_name ${CMAKE_BUILD_TYPE})
endif()

set_property(SOURCE ${CMAKE_CURRENT_LIST_DIR}/bench_context.c APPEND PROPERTY
  COMPILE_DEFINITIONS
    "MHA_BENCH_COMPILER=\"${CMAKE_C_COMPILER_ID} ${CMAKE_C_COMPILER_VERSION}\""
    "MHA_BENCH_C_FLAGS=\"${_mha_bench_flags}\""
    "MHA_BENCH_BUILD_TYPE=\"${_mha_bench_bt_name}\""
    "MHA_BENCH_GIT_COMMIT=\"${_mha_bench_commit}\"")
