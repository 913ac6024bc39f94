//! The `tessera` command (placeholder until the visualisation lands).
fn main() {
    println!("tessera: tour coming soon");
}
