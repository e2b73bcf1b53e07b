# ccache as the compiler launcher, when it is installed. Paths are hashed
# relative to the source tree and the working directory is left out of the
# hash, so a clean checkout in another folder reuses the cache; with the two
# sloppinesses ccache caches the precompiled LibTorch header and the files
# compiled with it. ATTUNE_CCACHE_BASEDIR: the source tree's root.
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env CCACHE_BASEDIR=${ATTUNE_CCACHE_BASEDIR} CCACHE_NOHASHDIR=1
      CCACHE_SLOPPINESS=pch_defines,time_macros ${CCACHE_PROGRAM})
endif()
