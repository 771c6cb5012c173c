# tools/mpi.cmake -- the mha-mpi binary: the same `mha` command built with
# MHA_WITH_MPI and linked with MPI, so that `mpirun -n N mha-mpi run --mpi
# MODEL X.npy -o Y.npy` scores a dataset with each rank on a row range, all
# writing one output through MPI-IO. Built only when an MPI for C is found
# (Debian: libopenmpi-dev openmpi-bin); the plain `mha` never links MPI.

find_package(MPI COMPONENTS C QUIET)
if(MPI_C_FOUND)
  # the sources and libraries of `mha` as the other tools/*.cmake left them
  get_target_property(_mha_cli_srcs mha_cli SOURCES)
  get_target_property(_mha_cli_libs mha_cli LINK_LIBRARIES)
  add_executable(mha_mpi ${_mha_cli_srcs})
  set_target_properties(mha_mpi PROPERTIES OUTPUT_NAME mha-mpi)
  target_link_libraries(mha_mpi PRIVATE ${_mha_cli_libs} MPI::MPI_C)
  # the subcommands the dispatcher found for `mha` (bench, merge)
  get_target_property(_mha_cli_defs mha_cli COMPILE_DEFINITIONS)
  if(_mha_cli_defs)
    target_compile_definitions(mha_mpi PRIVATE ${_mha_cli_defs})
  endif()
  target_compile_definitions(mha_mpi PRIVATE MHA_WITH_MPI)
  # libmicrohttpd's headers (serve opens the library itself: serve_mhd.c)
  get_target_property(_mha_cli_incs mha_cli INCLUDE_DIRECTORIES)
  if(_mha_cli_incs)
    target_include_directories(mha_mpi PRIVATE ${_mha_cli_incs})
  endif()
  install(TARGETS mha_mpi RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  message(STATUS "MPI found (${MPI_C_LIB_NAMES}): building mha-mpi")
else()
  message(STATUS "MPI not found: mha-mpi is not built (install libopenmpi-dev)")
endif()
