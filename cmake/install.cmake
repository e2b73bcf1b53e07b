# `cmake --install`: the C ABI (libattune.so and attune/attune.h), a CMake
# package (find_package(Attune CONFIG) -> Attune::attune) with a version file,
# and a pkg-config file. The C++ module libraries are not installed: they link
# LibTorch statically into libattune.so's closure and have no stable ABI.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(ATTUNE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Attune)
install(TARGETS attune_c EXPORT AttuneTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/assistant/include/attune/attune.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/attune)
install(EXPORT AttuneTargets NAMESPACE Attune:: DESTINATION ${ATTUNE_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/AttuneConfig.cmake.in
  ${PROJECT_BINARY_DIR}/AttuneConfig.cmake INSTALL_DESTINATION ${ATTUNE_CMAKE_DIR})
# The package version follows the project; apps check the ABI at run time
# with attune_abi_version() (see attune.h).
write_basic_package_version_file(${PROJECT_BINARY_DIR}/AttuneConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/AttuneConfig.cmake ${PROJECT_BINARY_DIR}/AttuneConfigVersion.cmake
  DESTINATION ${ATTUNE_CMAKE_DIR})

# The .pc file finds the prefix relative to itself (relocatable install).
file(RELATIVE_PATH ATTUNE_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" ATTUNE_PC_TO_PREFIX "${ATTUNE_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/attune.pc.in ${PROJECT_BINARY_DIR}/attune.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/attune.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
