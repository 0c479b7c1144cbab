//! `dataset`: build, describe or preview datasets.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use nvg_studio::data::{self, FolderSource, ImageFolder};
use super::{BACKGROUND, open_sheet, save_png};


#[derive(Subcommand)]
pub enum DatasetCmd {
    /// Build the emoji sprite sheet and label file from the pinned npm packages (see README, "Data").
    ///
    /// Example: nvg-studio dataset build-emoji --packages /tmp/npm --size 32 --out assets/emoji/
    BuildEmoji {
        /// Folder holding the `npm pack` tarballs (or their unpacked folders).
        #[arg(long)]
        packages: PathBuf,
        /// Tile side in pixels (32 or 64).
        #[arg(long, default_value_t = 32)]
        size: u32,
        /// Output folder for emoji-SIZE.png and emoji-SIZE.ron.
        #[arg(long, default_value = "assets/emoji")]
        out: PathBuf,
        /// Store exact RGB instead of a 256-colour palette (about 3× larger).
        #[arg(long)]
        lossless: bool,
        /// Render threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Print class names and per-class counts of the bundled emoji set, another sheet, or an image folder.
    ///
    /// Example: nvg-studio dataset info --json
    Info {
        /// An image folder (one sub-folder per class) instead of the bundled set.
        #[arg(long, conflicts_with = "sheet")]
        data: Option<PathBuf>,
        /// An emoji label file (.ron) instead of the bundled one.
        #[arg(long)]
        sheet: Option<PathBuf>,
        /// Print JSON: { "classes": [names], "class_counts": { name: count }, ... }.
        #[arg(long)]
        json: bool,
    },
    /// Write a contact sheet PNG: one row per class (class id and name), N samples each.
    ///
    /// Example: nvg-studio dataset show --out contact.png --per-class 12
    Show {
        /// Where to write the PNG.
        #[arg(long)]
        out: PathBuf,
        /// Samples per class, spread evenly over the class.
        #[arg(long, default_value_t = 8)]
        per_class: usize,
        /// An image folder (one sub-folder per class) instead of the bundled set.
        #[arg(long, conflicts_with = "sheet")]
        data: Option<PathBuf>,
        /// An emoji label file (.ron) instead of the bundled one.
        #[arg(long)]
        sheet: Option<PathBuf>,
        /// Cell size for --data images (emoji sheets use their tile size).
        #[arg(long, default_value_t = 32)]
        size: u32,
    },
}

/// Runs a dataset subcommand.
pub fn dataset(cmd: DatasetCmd) -> Result<()> {
    match cmd {
        DatasetCmd::BuildEmoji { packages, size, out, lossless, threads } => {
            let opts = data::BuildOptions {
                packages,
                out_dir: out,
                tile_size: size,
                encoding: if lossless { data::SheetEncoding::Lossless } else { data::SheetEncoding::Palette },
                threads,
            };
            let pb = ProgressBar::new(0);
            pb.set_style(
                ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed_precise}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let report = data::build_emoji_sheet(&opts, &mut |p| match p {
                data::BuildProgress::Reading => pb.set_message("reading packages"),
                data::BuildProgress::Rendering { done, total } => {
                    pb.set_message("rendering");
                    pb.set_length(total as u64);
                    pb.set_position(done as u64);
                }
                data::BuildProgress::Writing => pb.set_message("writing"),
            })?;
            pb.finish_and_clear();
            let labels = &report.labels;
            println!(
                "{} tiles of {}×{} px in {} classes, {:.1} s",
                labels.count, labels.tile_size, labels.tile_size, labels.classes.len(), report.elapsed.as_secs_f64()
            );
            println!("sheet:  {} ({} bytes{})", report.sheet_path.display(), report.sheet_bytes,
                if report.palette_colours > 0 {
                    format!(", {} colours, {:.1} dB PSNR vs lossless", report.palette_colours, report.psnr_db)
                } else {
                    ", lossless".to_string()
                });
            println!("labels: {} ({} bytes)", report.labels_path.display(), report.labels_bytes);
            let vendors: Vec<String> = report.vendor_counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
            println!("per vendor: {}", vendors.join(", "));
            if !report.unmatched_emoji.is_empty() {
                println!("emoji drawn by no vendor: {}", report.unmatched_emoji.join(" "));
            }
            Ok(())
        }
        DatasetCmd::Info { data: folder, sheet, json } => {
            let summary = match folder {
                Some(dir) => {
                    let f = ImageFolder::open(&dir)?;
                    data::DatasetSummary::of_counts(&dir.display().to_string(), f.class_names(), &f.class_counts())
                }
                None => data::DatasetSummary::of_sheet(&open_sheet(sheet.as_deref())?),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.to_text());
            }
            Ok(())
        }
        DatasetCmd::Show { out, per_class, data: folder, sheet, size } => {
            let img = match folder {
                Some(dir) => {
                    let f = std::sync::Arc::new(ImageFolder::open(&dir)?);
                    let items: Vec<Vec<usize>> =
                        (0..f.class_names().len()).map(|c| f.class_range(c).collect()).collect();
                    data::contact_sheet(&FolderSource::new(f, size, BACKGROUND)?, &items, per_class)?
                }
                None => {
                    let sheet = std::sync::Arc::new(open_sheet(sheet.as_deref())?);
                    let items: Vec<Vec<usize>> =
                        (0..sheet.class_names().len()).map(|c| sheet.items_of_class(c).to_vec()).collect();
                    let tile = sheet.tile_size();
                    data::contact_sheet(&data::EmojiSource::new(sheet, tile)?, &items, per_class)?
                }
            };
            save_png(&img, &out)?;
            println!("contact sheet: {} ({}×{} px)", out.display(), img.width(), img.height());
            Ok(())
        }
    }
}
