//! Binary entry point.

fn main() -> anyhow::Result<()> {
    Ok(())
}
