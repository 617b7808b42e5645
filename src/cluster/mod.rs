pub mod copy;
pub mod keys;
