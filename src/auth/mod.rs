//! Who is asking: passwords and the session identity (who is signed in). Limits are counted in
//! the database (`services::rate`).

pub mod guard;
pub mod password;

pub use guard::{SessionUser, SignedIn};
