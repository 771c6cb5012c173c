# The serving measurements' own programs, never installed:
# serve-load (build/bin/serve-load): the open-loop HTTP load generator of
# `make serve-soak` and `make serve-table`: its own HTTP/1.1 client on one
# epoll loop, libcurl (Debian libcurl4-openssl-dev) parsing the URL; left
# out without it.
# serve-cpu (build/bin/serve-cpu): the request queue's CPU time per request,
# batching off and on, through mha.h only (linked like an outside program).
add_executable(serve_cpu ${CMAKE_CURRENT_SOURCE_DIR}/serve_cpu.c)
set_target_properties(serve_cpu PROPERTIES OUTPUT_NAME serve-cpu)
target_link_libraries(serve_cpu PRIVATE mha Threads::Threads)
pkg_check_modules(CURL QUIET IMPORTED_TARGET libcurl)
if(CURL_FOUND)
  add_executable(serve_load ${CMAKE_CURRENT_SOURCE_DIR}/serve_load.c)
  set_target_properties(serve_load PROPERTIES OUTPUT_NAME serve-load)
  target_link_libraries(serve_load PRIVATE mha PkgConfig::CURL m)
else()
  message(STATUS "libcurl not found: serve-load (the serving load generator) is left out")
endif()
