# tools/embed.cmake -- the embedding example (build/bin/mha_embed_example):
# a multi-threaded request loop that uses only mha.h and links the shared
# libmha the way an outside program would (so it finds the plugins beside
# libmha). tests/cli/embed_example.sh runs it.
#
# tools/CMakeLists.txt globs every tools/*.c into the `mha` command; the
# example has its own main(), so it is taken back out of that target here.

set(_mha_embed_src ${CMAKE_CURRENT_SOURCE_DIR}/embed_example.c)
get_target_property(_mha_cli_sources mha_cli SOURCES)
list(REMOVE_ITEM _mha_cli_sources ${_mha_embed_src})
set_property(TARGET mha_cli PROPERTY SOURCES ${_mha_cli_sources})

if(EXISTS ${_mha_embed_src})
  add_executable(mha_embed_example ${_mha_embed_src})
  target_link_libraries(mha_embed_example PRIVATE mha Threads::Threads)
endif()
