# Builds libfarmem from this repository with cargo and defines the imported targets the
# examples link: farmem::farmem (libfarmem.so) and farmem::farmem_static (libfarmem.a).
#
# Cargo tracks its own inputs, so the build step always runs (a no-op build takes a second) and
# declares the two libraries as byproducts for the generator. The target dir is
# $CARGO_TARGET_DIR when set (so a CI run shares the workspace's build cache), else
# <repo>/target; FARMEM_CARGO_TARGET_DIR overrides both.

function(farmem_cargo_targets)
  find_program(FARMEM_CARGO cargo HINTS "$ENV{HOME}/.cargo/bin" "$ENV{CARGO_HOME}/bin")
  if(NOT FARMEM_CARGO)
    message(FATAL_ERROR
      "FARMEM_FROM_SOURCE=ON needs cargo (install Rust from https://rustup.rs) or configure "
      "with -DFARMEM_FROM_SOURCE=OFF and CMAKE_PREFIX_PATH pointing at an installed farmem")
  endif()

  if(DEFINED ENV{CARGO_TARGET_DIR} AND NOT "$ENV{CARGO_TARGET_DIR}" STREQUAL "")
    set(_default_target_dir "$ENV{CARGO_TARGET_DIR}")
  else()
    set(_default_target_dir "${FARMEM_REPO_ROOT}/target")
  endif()
  set(FARMEM_CARGO_TARGET_DIR "${_default_target_dir}" CACHE PATH
      "cargo target dir libfarmem is built in")
  # A relative dir means what cargo would make of it: relative to the repository root.
  get_filename_component(_target_dir "${FARMEM_CARGO_TARGET_DIR}" ABSOLUTE
                         BASE_DIR "${FARMEM_REPO_ROOT}")

  if(FARMEM_CARGO_PROFILE STREQUAL "dev" OR FARMEM_CARGO_PROFILE STREQUAL "test")
    set(_profile_dir debug)
  else()
    set(_profile_dir "${FARMEM_CARGO_PROFILE}")
  endif()
  set(_lib_dir "${_target_dir}/${_profile_dir}")
  set(FARMEM_STATIC_LIB "${_lib_dir}/libfarmem.a" PARENT_SCOPE)
  set(FARMEM_SHARED_LIB "${_lib_dir}/libfarmem.so" PARENT_SCOPE)

  set(_cargo_env ${CMAKE_COMMAND} -E env "CARGO_TARGET_DIR=${_target_dir}")
  add_custom_target(farmem_cargo ALL
    COMMAND ${_cargo_env} "${FARMEM_CARGO}" build -p farmem-ffi --profile "${FARMEM_CARGO_PROFILE}"
    WORKING_DIRECTORY "${FARMEM_REPO_ROOT}"
    BYPRODUCTS "${_lib_dir}/libfarmem.a" "${_lib_dir}/libfarmem.so"
    COMMENT "cargo build -p farmem-ffi --profile ${FARMEM_CARGO_PROFILE}"
    USES_TERMINAL
    VERBATIM)

  # The demo the taxi test compares against, built and run by cargo on the same profile.
  set(FARMEM_CARGO_DEMO_CMD
      ${_cargo_env} "${FARMEM_CARGO}" run -q --manifest-path "${FARMEM_REPO_ROOT}/Cargo.toml"
      --profile "${FARMEM_CARGO_PROFILE}" -p farmem --bin farmem-demo --
      PARENT_SCOPE)

  # The memory server binary the remote_server test starts.
  set(FARMEM_SERVER_BIN "${_lib_dir}/farmem-server" PARENT_SCOPE)
  set(FARMEM_CARGO_SERVER_BUILD_CMD
      ${_cargo_env} "${FARMEM_CARGO}" build -q --manifest-path "${FARMEM_REPO_ROOT}/Cargo.toml"
      --profile "${FARMEM_CARGO_PROFILE}" -p farmem-server --bin farmem-server
      PARENT_SCOPE)

  set(_include_dir "${FARMEM_REPO_ROOT}/include")

  add_library(farmem::farmem SHARED IMPORTED GLOBAL)
  set_target_properties(farmem::farmem PROPERTIES
    IMPORTED_LOCATION "${_lib_dir}/libfarmem.so"
    # cargo's cdylib carries no SONAME: link it as -lfarmem so DT_NEEDED is libfarmem.so
    # (found through the build RPATH here and the install RPATH of consumers).
    IMPORTED_NO_SONAME TRUE
    INTERFACE_INCLUDE_DIRECTORIES "${_include_dir}")
  add_dependencies(farmem::farmem farmem_cargo)

  add_library(farmem::farmem_static STATIC IMPORTED GLOBAL)
  set_target_properties(farmem::farmem_static PROPERTIES
    IMPORTED_LOCATION "${_lib_dir}/libfarmem.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_include_dir}"
    # What the Rust standard library in a staticlib needs from the system.
    INTERFACE_LINK_LIBRARIES "pthread;dl;m")
  add_dependencies(farmem::farmem_static farmem_cargo)
endfunction()
