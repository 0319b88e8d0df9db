//! Multipath uplinks.
