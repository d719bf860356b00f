//! Driven by Marathon's own data in `shared/marathon-api`.
