//! The WireGuard overlay.
