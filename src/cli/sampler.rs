//! Sampler flags shared by `generate`, `swap`, `eval` and `eval-swap`, so that every command that
//! samples can be run with the same settings (and the model card says which ones it measured).

use anyhow::{Result, anyhow};
use clap::Args;

use nvg_studio::sampler::{Linear, SamplerSettings};

/// The sampler settings as command-line flags; the defaults are [`SamplerSettings::default`].
#[derive(Args, Clone, Debug)]
pub struct SamplerArgs {
    /// Content guidance schedule START:END over the stages, one value for a constant scale, or
    /// "off" (the paper's schedule is 1:3.5; the default was measured on the bundled model).
    #[arg(long, default_value = "12:20")]
    pub content_cfg: String,
    /// Structure guidance schedule START:END, one value, or "off" (the paper's: 1:2.5).
    #[arg(long, default_value = "4")]
    pub structure_cfg: String,
    /// Top-p schedule START:END (log schedule of the paper), or "off".
    #[arg(long, default_value = "1:0.5")]
    pub top_p: String,
    /// Keep only the K most likely codes (0 = off, 1 = greedy).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Softmax temperature of the content logits.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Euler steps of the structure flow (fewer = faster preview).
    #[arg(long, default_value_t = 25)]
    pub flow_steps: usize,
    /// Sample each split with Gumbel-top-k instead of taking the top half.
    #[arg(long)]
    pub gumbel: bool,
}

impl SamplerArgs {
    /// The validated settings; a bad value is one error naming the flag.
    pub fn settings(&self) -> Result<SamplerSettings> {
        let s = SamplerSettings {
            content_cfg: parse_schedule("--content-cfg", &self.content_cfg)?,
            structure_cfg: parse_schedule("--structure-cfg", &self.structure_cfg)?,
            top_p: parse_schedule("--top-p", &self.top_p)?,
            top_k: self.top_k,
            temperature: self.temperature,
            flow_steps: self.flow_steps,
            gumbel: self.gumbel,
        };
        s.validate().map_err(|e| anyhow!("{e}"))?;
        Ok(s)
    }
}

/// Parses "START:END" (or one value for a constant schedule, or "off").
pub fn parse_schedule(flag: &str, s: &str) -> Result<Option<Linear>> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let parse = |v: &str| v.trim().parse::<f32>().map_err(|_| anyhow!("{flag} {s}: expected START:END, a number, or off"));
    Ok(Some(match s.split_once(':') {
        Some((a, b)) => Linear { start: parse(a)?, end: parse(b)? },
        None => {
            let v = parse(s)?;
            Linear { start: v, end: v }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sampler: SamplerArgs,
    }

    #[test]
    fn flag_defaults_are_the_sampler_defaults() {
        use clap::Parser;
        let cli = Cli::parse_from(["x"]);
        assert_eq!(cli.sampler.settings().unwrap(), SamplerSettings::default());
        let paper = Cli::parse_from(["x", "--content-cfg", "1:3.5", "--structure-cfg", "1:2.5"]);
        assert_eq!(paper.sampler.settings().unwrap(), SamplerSettings::paper());
    }

    #[test]
    fn schedules_parse_and_bad_values_name_the_flag() {
        assert_eq!(parse_schedule("--x", "off").unwrap(), None);
        let l = parse_schedule("--x", "2").unwrap().unwrap();
        assert_eq!((l.start, l.end), (2.0, 2.0));
        let l = parse_schedule("--x", "1:3.5").unwrap().unwrap();
        assert_eq!((l.start, l.end), (1.0, 3.5));
        let e = parse_schedule("--content-cfg", "a:b").unwrap_err().to_string();
        assert!(e.contains("--content-cfg a:b"), "{e}");
    }
}
