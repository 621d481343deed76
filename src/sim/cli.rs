//! Shared command line of the simulation examples: `--seeds N [--seed-base B] [--seed S]`.

/// Parsed arguments.
#[derive(Debug, Clone)]
pub struct SeedArgs {
    /// First seed.
    pub base: u64,
    /// Number of seeds.
    pub count: u64,
    /// Flags that were not seed options.
    pub rest: Vec<String>,
}

impl SeedArgs {
    /// Parse `args` (without the program name).
    pub fn parse(args: impl Iterator<Item = String>) -> Result<SeedArgs, String> {
        let mut a = SeedArgs {
            base: 0,
            count: 100,
            rest: Vec::new(),
        };
        let mut it = args.peekable();
        let num = |v: Option<String>, what: &str| -> Result<u64, String> {
            v.ok_or(format!("{what} needs a value"))?
                .parse()
                .map_err(|e| format!("{what}: {e}"))
        };
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--seeds" => a.count = num(it.next(), "--seeds")?,
                "--seed-base" => a.base = num(it.next(), "--seed-base")?,
                "--seed" => {
                    a.base = num(it.next(), "--seed")?;
                    a.count = 1;
                }
                _ => a.rest.push(arg),
            }
        }
        Ok(a)
    }
}
