//! Namespace harness.
