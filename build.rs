//! Re-embed migrations when a migration folder is added (embed_migrations! alone misses new folders).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
