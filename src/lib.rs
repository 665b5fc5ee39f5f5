//! Vestibule: a self-hosted guest collaboration portal.
//!
//! A request comes in through [`web`], is checked by [`auth`], handled by [`services`] over
//! [`db`], and any mail it causes goes out through [`mail`].

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod i18n;
pub mod mail;
pub mod metrics;
pub mod services;
pub mod startup;
pub mod state;
pub mod web;
