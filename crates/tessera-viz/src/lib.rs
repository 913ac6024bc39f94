//! tessera-viz (placeholder).
