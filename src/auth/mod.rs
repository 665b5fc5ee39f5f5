//! Who is asking: passwords, throttling and the session identity (who is signed in).

pub mod guard;
pub mod password;
pub mod throttle;

pub use guard::{SessionUser, SignedIn};
