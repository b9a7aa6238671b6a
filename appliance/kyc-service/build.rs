//! dlib's Rust wrapper links `-lcblas`; Debian ships the CBLAS interface inside `libblas.so.3` (netlib or OpenBLAS,
//! by alternatives) and no `libcblas.so`. Give the linker one in OUT_DIR pointing at the system BLAS, so nothing on
//! the system has to change. The binary then records `libblas.so.3`, the library's own soname.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dirs = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"];
    if dirs.iter().any(|d| std::path::Path::new(d).join("libcblas.so").exists()) {
        return;
    }
    let Some(blas) = dirs.iter().map(|d| std::path::Path::new(d).join("libblas.so.3")).find(|p| p.exists()) else {
        println!("cargo:warning=no libblas.so.3: install libblas-dev (tests/setup.sh does)");
        return;
    };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let link = out.join("libcblas.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&blas, &link).expect("a symlink in OUT_DIR");
    println!("cargo:rustc-link-search=native={}", out.display());
}
