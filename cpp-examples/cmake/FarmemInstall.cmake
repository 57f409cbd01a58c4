# Installs the farmem package built from source: headers, libfarmem.a and libfarmem.so,
# lib/cmake/farmem/farmemConfig.cmake (+ version file) defining farmem::farmem and
# farmem::farmem_static, and lib/pkgconfig/farmem.pc. Both config files locate the prefix
# relative to themselves, so an install may be moved (`cmake --install . --prefix P` works for
# any P chosen at install time).
include(CMakePackageConfigHelpers)

install(FILES "${FARMEM_REPO_ROOT}/include/farmem.h" "${FARMEM_REPO_ROOT}/include/farmem.hpp"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
# Every per-subsystem header: the C ones (*.h) and the C++ ones (*.hpp) farmem.hpp includes.
install(DIRECTORY "${FARMEM_REPO_ROOT}/include/farmem/"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/farmem"
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
install(FILES "${FARMEM_STATIC_LIB}" "${FARMEM_SHARED_LIB}"
        DESTINATION "${CMAKE_INSTALL_LIBDIR}")

set(FARMEM_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/farmem")
configure_package_config_file(
  "${CMAKE_CURRENT_SOURCE_DIR}/cmake/farmemConfig.cmake.in"
  "${CMAKE_CURRENT_BINARY_DIR}/farmemConfig.cmake"
  INSTALL_DESTINATION "${FARMEM_CMAKE_DIR}"
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR)
# 0.x releases break compatibility between minor versions.
write_basic_package_version_file(
  "${CMAKE_CURRENT_BINARY_DIR}/farmemConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/farmemConfig.cmake"
              "${CMAKE_CURRENT_BINARY_DIR}/farmemConfigVersion.cmake"
        DESTINATION "${FARMEM_CMAKE_DIR}")

# farmem.pc: prefix relative to the .pc file's own directory.
set(_pc_dir "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
file(RELATIVE_PATH FARMEM_PC_TO_PREFIX "/prefix/${_pc_dir}" "/prefix")
string(REGEX REPLACE "/$" "" FARMEM_PC_TO_PREFIX "${FARMEM_PC_TO_PREFIX}")
configure_file("${CMAKE_CURRENT_SOURCE_DIR}/cmake/farmem.pc.in"
               "${CMAKE_CURRENT_BINARY_DIR}/farmem.pc" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/farmem.pc" DESTINATION "${_pc_dir}")
