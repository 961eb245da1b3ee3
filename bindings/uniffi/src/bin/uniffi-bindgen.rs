//! The `uniffi-bindgen` of this crate: `generate.sh` runs it in library mode on
//! the built `libpeerconnect_ffi` to write the Kotlin, Swift and Python bindings.

fn main() {
    uniffi::uniffi_bindgen_main()
}
