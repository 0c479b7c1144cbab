//! The main canvas drawn by both paths side by side on the same synthetic layers: the WGSL
//! shader through egui's wgpu paint callback on the left, the CPU compositor on the right. They
//! should look the same.
//!
//! `cargo run --example canvas_demo` (hover a canvas to highlight a cluster).

use eframe::egui;
use nvg_studio::ui::canvas::{self, CanvasLayers, CanvasPath, CpuCanvas};

const IMAGE_SIDE: usize = 32;
const GRID_SIDE: usize = 8;
const STAGE: usize = 3;
const CANVAS_PT: f32 = 512.0;

struct Demo {
    image: Vec<u8>,
    labels: Vec<u32>,
    lock: Vec<bool>,
    pending: Vec<bool>,
    tint: Vec<[u8; 3]>,
    show_tint: bool,
    opacity: f32,
    boundaries: bool,
    cpu: CpuCanvas,
}

impl Demo {
    fn new() -> Self {
        let s = IMAGE_SIDE;
        // A sky-to-ground gradient with a sun disc and a checkered floor: pixel art to look at.
        let mut image = Vec::with_capacity(s * s * 3);
        for y in 0..s {
            for x in 0..s {
                let (fx, fy) = (x as f32 / s as f32, y as f32 / s as f32);
                let sun = (fx - 0.7).powi(2) + (fy - 0.3).powi(2) < 0.02;
                let px = if sun {
                    [250, 210, 80]
                } else if y >= s * 5 / 8 {
                    if (x / 4 + y / 4) % 2 == 0 {
                        [90, 140, 60]
                    } else {
                        [60, 110, 45]
                    }
                } else {
                    [(60.0 + 120.0 * fy) as u8, (120.0 + 80.0 * fy) as u8, 220]
                };
                image.extend_from_slice(&px);
            }
        }
        // Eight clusters: quadrants split again, so labels form nested blocks like a real
        // stage-3 structure map.
        let g = GRID_SIDE;
        let labels = (0..g * g)
            .map(|i| {
                let (r, c) = (i / g, i % g);
                let quad = (r >= g / 2) as u32 * 2 + (c >= g / 2) as u32;
                let half = if quad % 2 == 0 {
                    (c % (g / 2) >= 1 + r % 3) as u32
                } else {
                    (r % 4 >= 2) as u32
                };
                quad * 2 + half
            })
            .collect();
        let mut lock = vec![false; g * g];
        for i in [0, 1, 8, 9, 10, 17] {
            lock[i] = true;
        }
        let mut pending = vec![false; g * g];
        for i in [44, 45, 52, 53, 54, 61] {
            pending[i] = true;
        }
        let tint = (0..g * g)
            .map(|i| {
                if i % g < g / 2 {
                    [230, 60, 60]
                } else {
                    [60, 60, 230]
                }
            })
            .collect();
        Self {
            image,
            labels,
            lock,
            pending,
            tint,
            show_tint: false,
            opacity: 0.35,
            boundaries: true,
            cpu: CpuCanvas::new(),
        }
    }

    /// Cluster under the pointer, if it is over one of the canvases; else cluster 5.
    fn hovered(&self, ui: &egui::Ui, rects: [egui::Rect; 2]) -> u32 {
        let pointer = ui.ctx().pointer_hover_pos();
        for rect in rects {
            if let Some(p) = pointer.filter(|p| rect.contains(*p)) {
                let cx = (((p.x - rect.min.x) / rect.width()) * GRID_SIDE as f32) as usize;
                let cy = (((p.y - rect.min.y) / rect.height()) * GRID_SIDE as f32) as usize;
                let (cx, cy) = (cx.min(GRID_SIDE - 1), cy.min(GRID_SIDE - 1));
                return self.labels[cy * GRID_SIDE + cx];
            }
        }
        5
    }
}

impl eframe::App for Demo {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let path = CanvasPath::for_frame(frame);
        egui::Frame::central_panel(ui.style()).show(ui, |ui| {
            ui.set_min_size(ui.available_size());
            ui.horizontal(|ui| {
                ui.add(egui::Slider::new(&mut self.opacity, 0.0..=1.0).text("overlay opacity"));
                ui.checkbox(&mut self.boundaries, "boundaries");
                ui.checkbox(&mut self.show_tint, "class tint");
                ui.label(format!("window renderer: {}", path.label()));
            });
            ui.add_space(6.0);
            let top = ui.cursor().min.y + 24.0;
            let left =
                egui::Rect::from_min_size(egui::pos2(24.0, top), egui::vec2(CANVAS_PT, CANVAS_PT));
            let right = left.translate(egui::vec2(CANVAS_PT + 40.0, 0.0));
            let hovered = self.hovered(ui, [left, right]);
            let layers = CanvasLayers {
                image: &self.image,
                image_side: IMAGE_SIDE,
                labels: &self.labels,
                grid_side: GRID_SIDE,
                stage: STAGE,
                lock: &self.lock,
                pending: &self.pending,
                class_tint: self.show_tint.then_some(self.tint.as_slice()),
                hovered: Some(hovered),
                overlay_opacity: self.opacity,
                boundaries: self.boundaries,
            };
            let font = egui::FontId::proportional(16.0);
            let text = ui.visuals().text_color();
            let painter = ui.painter();
            let gpu_title = if path == CanvasPath::Gpu {
                "GPU: shaders/canvas.wgsl (wgpu paint callback)"
            } else {
                "GPU: unavailable (not wgpu)"
            };
            painter.text(
                left.left_top() - egui::vec2(0.0, 4.0),
                egui::Align2::LEFT_BOTTOM,
                gpu_title,
                font.clone(),
                text,
            );
            painter.text(
                right.left_top() - egui::vec2(0.0, 4.0),
                egui::Align2::LEFT_BOTTOM,
                "CPU: composite_cpu (egui texture)",
                font,
                text,
            );
            if path == CanvasPath::Gpu {
                canvas::paint_gpu(ui, left, &layers);
            }
            self.cpu.show(ui, right, &layers);
        });
    }
}

fn main() -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([1100.0, 650.0]),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "nvg-studio canvas demo",
        options,
        Box::new(|cc| {
            if let Some(rs) = cc.wgpu_render_state.as_ref() {
                canvas::register(rs);
            }
            Ok(Box::new(Demo::new()))
        }),
    )
}
