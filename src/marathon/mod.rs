//! Marathon's wire rules: app validation and the defaults Marathon fills in.

pub mod validate;
