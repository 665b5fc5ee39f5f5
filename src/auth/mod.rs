//! Who is asking: passwords, server-side sessions, CSRF protection, throttling and the
//! extractors that yield a signed-in user.

pub mod csrf;
pub mod guard;
pub mod password;
pub mod session_store;
pub mod throttle;

pub use guard::{SessionUser, SignedIn};
