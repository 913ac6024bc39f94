//! libtessera.so (placeholder).
#[global_allocator]
static GLOBAL: tessera_core::Tessera = tessera_core::Tessera;

/// malloc
#[no_mangle]
pub extern "C" fn tessera_placeholder() -> usize {
    42
}
