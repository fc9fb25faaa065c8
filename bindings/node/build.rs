//! Build script of the Node addon: napi-build's link setup (on macOS the
//! addon resolves Node's symbols at load time). Must never: download
//! anything or touch files outside the build's own output.

fn main() {
    napi_build::setup();
}
