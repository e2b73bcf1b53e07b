// Links libattune.so from ATTUNE_LIB_DIR (the build or install tree's lib
// folder), else from the system's library path.
fn main() {
    println!("cargo:rerun-if-env-changed=ATTUNE_LIB_DIR");
    if let Ok(dir) = std::env::var("ATTUNE_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
        // Tests and examples find the library where it was linked from.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rustc-link-lib=dylib=attune");
}
