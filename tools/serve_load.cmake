# serve-load (build/bin/serve-load): the open-loop HTTP load generator of
# `make serve-soak` and `make serve-table`, on libcurl (Debian
# libcurl4-openssl-dev); left out without it. Never installed: a
# measuring tool of this source tree.
pkg_check_modules(CURL QUIET IMPORTED_TARGET libcurl)
if(CURL_FOUND)
  add_executable(serve_load ${CMAKE_CURRENT_SOURCE_DIR}/serve_load.c)
  set_target_properties(serve_load PROPERTIES OUTPUT_NAME serve-load)
  target_link_libraries(serve_load PRIVATE PkgConfig::CURL m)
else()
  message(STATUS "libcurl not found: serve-load (the serving load generator) is left out")
endif()
