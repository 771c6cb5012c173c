# plugins/testing/wrong.cmake -- the "wrong" plugin: plain C kernels whose
# attention output is deliberately off by 1e-2, so the tests can see
# `mha bench` (and anything else that checks backends against the scalar
# reference) catch an inaccurate backend. Built as mha-plugin-wrong.so into
# the testing folder only (never MHA_PLUGIN_BUILD_DIR, which every runtime
# scans); tests reach it through --plugin-path or MHA_PLUGIN_PATH.
if(MHA_BUILD_TESTS)
  mha_add_plugin(wrong
    NO_ENTRY NO_INSTALL
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/wrong_plugin.c
    OUTPUT_DIR ${CMAKE_BINARY_DIR}/lib/mha/testing-plugins)
endif()
