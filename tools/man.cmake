# tools/man.cmake -- the man pages of the `mha` command, made from its own
# --help texts by tools/man/make-man.sh after each build of `mha`
# (build/share/man/man1/mha.1, mha-run.1, ...) and installed to
# share/man/man1.
set(MHA_MAN_DIR ${CMAKE_BINARY_DIR}/share/man/man1)
add_custom_command(TARGET mha_cli POST_BUILD
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/man/make-man.sh $<TARGET_FILE:mha_cli>
          ${MHA_MAN_DIR} ${PROJECT_VERSION}
  COMMENT "man pages of mha -> ${MHA_MAN_DIR}"
  VERBATIM)
install(DIRECTORY ${MHA_MAN_DIR}/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
  FILES_MATCHING PATTERN "*.1")
