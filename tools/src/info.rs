//! `bertling info`: what this machine's CPU offers and which kernels a model gets on it.
//!
//! On a Raspberry Pi the answer decides the speed: NEON (`asimd`) everywhere, the dot product
//! (`asimddp`, int8) only on the Pi 5's Cortex-A76, SVE on none. The kernels are the matrix-product
//! kernels tract picked for the loaded model's optimized plan (`bertling::Model::kernels`).

use std::path::PathBuf;

use anyhow::Result;
use bertling::{LoadOptions, Model};
use serde::Serialize;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// A model file: also load it and list the kernels its plan uses on this CPU.
    model: Option<PathBuf>,
    /// Threads per request (the plan is made as `fill --threads` would make it).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What `bertling info --json` prints.
#[derive(Debug, Serialize)]
pub struct Info {
    pub bertling_version: &'static str,
    /// `aarch64`, `x86_64`, ...
    pub arch: &'static str,
    /// The CPU features that matter to tract's kernels, as the running CPU reports them
    /// (Linux names: `asimd`, `asimddp`, `fphp`, `i8mm`, `bf16`, `sve`, `sve2` on aarch64).
    pub cpu_features: Vec<&'static str>,
    /// `/proc/cpuinfo`'s first `CPU part` (aarch64: 0xd03 A53, 0xd08 A72, 0xd0b A76), when present.
    /// qemu-user 7.2 shows the host's file, so there is none under qemu.
    pub cpu_part: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// The kernel tract's dispatch picks on this CPU for an int8 product (i8 x i8 -> i32) of an
    /// encoder's shape (768 x 768 x 16 tokens): what int8 models will get
    /// (`arm64simd_mmm_i32_8x8_dot` with the dot product, `arm64simd_mmm_i32_8x8` without).
    pub int8_kernel: Option<String>,
    /// The matrix-product kernels of the model's plan, e.g. `arm64simd_mmm_f32_8x8_gen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<String>>,
}

/// The CPU features tract's kernel choice depends on, as detected at run time.
pub fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut found = vec![];
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        let all = [
            ("asimd", has!("neon")),
            ("fphp", has!("fp16")),
            ("asimddp", has!("dotprod")),
            ("i8mm", has!("i8mm")),
            ("bf16", has!("bf16")),
            ("sve", has!("sve")),
            ("sve2", has!("sve2")),
        ];
        found.extend(all.iter().filter(|(_, on)| *on).map(|(name, _)| *name));
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let all = [
            ("sse4.1", has!("sse4.1")),
            ("avx", has!("avx")),
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vl", has!("avx512vl")),
            ("avx512vnni", has!("avx512vnni")),
            ("avxvnni", has!("avxvnni")),
        ];
        found.extend(all.iter().filter(|(_, on)| *on).map(|(name, _)| *name));
    }
    found
}

/// The kernel default int8 model files' encoder products run on this CPU (bertling's own, for
/// 8-bit codes per 64 inputs: see `bertling::int8::a8`); `Model::kernels` lists a given file's
/// from its plan.
pub fn int8_kernel() -> Option<String> {
    Some(bertling::int8::a8::kernel_name().to_string())
}

fn cpu_part() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|l| l.starts_with("CPU part"))
        .and_then(|l| l.split(':').nth(1))
        .map(|p| p.trim().to_string())
}

/// Collects the information `bertling info` prints.
pub fn info(model: Option<PathBuf>, threads: usize) -> Result<Info> {
    let kernels = match &model {
        Some(path) => Some(
            Model::load_with(
                path,
                &LoadOptions {
                    threads: threads.max(1),
                },
            )?
            .kernels(),
        ),
        None => None,
    };
    Ok(Info {
        bertling_version: env!("CARGO_PKG_VERSION"),
        arch: std::env::consts::ARCH,
        cpu_features: cpu_features(),
        cpu_part: cpu_part(),
        int8_kernel: int8_kernel(),
        model,
        kernels,
    })
}

pub fn run(args: InfoArgs) -> Result<()> {
    let info = info(args.model, args.threads)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    outln!("bertling      {}", info.bertling_version);
    outln!("arch          {}", info.arch);
    outln!("cpu features  {}", info.cpu_features.join(" "));
    if let Some(part) = &info.cpu_part {
        outln!("cpu part      {part}");
    }
    if let Some(kernel) = &info.int8_kernel {
        outln!("int8 kernel   {kernel} (what int8 models get here)");
    }
    if let (Some(model), Some(kernels)) = (&info.model, &info.kernels) {
        outln!("model         {}", model.display());
        outln!("kernels       {}", kernels.join(" "));
    }
    Ok(())
}
