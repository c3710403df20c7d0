//! The real-kernel backend.
