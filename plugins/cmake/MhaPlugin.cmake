# MhaPlugin.cmake -- mha_add_plugin(): builds one backend plugin the way the
# ABI (plugins/include/mha/plugin.h) wants it:
#   - a MODULE library named mha-plugin-<name>.so in MHA_PLUGIN_BUILD_DIR,
#     installed to MHA_PLUGIN_INSTALL_DIR;
#   - exactly one exported symbol, mha_plugin_get (hidden visibility plus a
#     version script);
#   - entry and probe sources (SOURCES) compiled without ISA flags and
#     without LTO; ISA flags only on KERNEL_SOURCES, which are built as a
#     separate object library so the flags cannot leak to the probe.
#
#   mha_add_plugin(<name>
#       TABLE_FN <function returning the plugin's table>
#       SOURCES <ISA-free sources: table, probe>
#       [KERNEL_SOURCES <sources built with ISA_FLAGS>]
#       [ISA_FLAGS <compiler flags>]
#       [LINK <libraries for kernels and module>]
#       [OUTPUT_DIR <dir>]      default MHA_PLUGIN_BUILD_DIR
#       [NO_ENTRY]              the sources define mha_plugin_get themselves
#       [NO_VERSION_SCRIPT]     (test plugins that must export something else)
#       [NO_INSTALL])

set(MHA_PLUGIN_SUPPORT_DIR ${CMAKE_CURRENT_LIST_DIR}/../common)
get_filename_component(MHA_PLUGIN_SUPPORT_DIR ${MHA_PLUGIN_SUPPORT_DIR} ABSOLUTE)

function(mha_add_plugin name)
  cmake_parse_arguments(P "NO_ENTRY;NO_VERSION_SCRIPT;NO_INSTALL" "TABLE_FN;OUTPUT_DIR"
    "SOURCES;KERNEL_SOURCES;ISA_FLAGS;LINK" ${ARGN})
  set(target mha-plugin-${name})
  if(NOT P_OUTPUT_DIR)
    set(P_OUTPUT_DIR ${MHA_PLUGIN_BUILD_DIR})
  endif()
  set(includes
    ${PROJECT_SOURCE_DIR}/plugins/include
    ${MHA_PLUGIN_SUPPORT_DIR}
    ${PROJECT_SOURCE_DIR}/backends)
  # Same rounding for every element whatever the vector/scalar path.
  set(numeric_flags -ffp-contract=off)

  set(objects)
  if(P_KERNEL_SOURCES)
    add_library(${target}-kernels OBJECT ${P_KERNEL_SOURCES})
    target_include_directories(${target}-kernels PRIVATE ${includes})
    target_compile_options(${target}-kernels PRIVATE
      ${P_ISA_FLAGS} ${numeric_flags} -fvisibility=hidden)
    if(P_LINK)
      target_link_libraries(${target}-kernels PRIVATE ${P_LINK})
    endif()
    set(objects $<TARGET_OBJECTS:${target}-kernels>)
  endif()

  set(entry)
  if(NOT P_NO_ENTRY)
    set(entry ${MHA_PLUGIN_SUPPORT_DIR}/plugin_entry.c)
  endif()
  add_library(${target} MODULE ${entry} ${P_SOURCES} ${objects})
  target_include_directories(${target} PRIVATE ${includes})
  # Entry and probe: no ISA flags, no LTO (a probe must run on any CPU).
  target_compile_options(${target} PRIVATE ${numeric_flags} -fvisibility=hidden -fno-lto)
  if(P_TABLE_FN)
    target_compile_definitions(${target} PRIVATE MHA_PLUGIN_TABLE_FN=${P_TABLE_FN})
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME mha-plugin-${name}
    SUFFIX ".so"
    LIBRARY_OUTPUT_DIRECTORY ${P_OUTPUT_DIR}
    INTERPROCEDURAL_OPTIMIZATION OFF)
  if(NOT P_NO_VERSION_SCRIPT)
    target_link_options(${target} PRIVATE
      -Wl,--version-script=${MHA_PLUGIN_SUPPORT_DIR}/mha-plugin.map)
    set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS
      ${MHA_PLUGIN_SUPPORT_DIR}/mha-plugin.map)
  endif()
  target_link_libraries(${target} PRIVATE ${P_LINK} m)
  if(NOT P_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION ${MHA_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
