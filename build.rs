//! Release builds keep the line tables backtraces read, compressed by the linker, so a
//! panic still names file and line while the binary stays small.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        // std's backtrace reads zlib-compressed debug sections (gimli and miniz_oxide).
        println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
    }
}
