//! memeify: a meme as a real PNG. The seed prototype's function, done fully:
//! a template and `top|bottom` captions in, the picture with the captions
//! drawn on it out (`image/png`, declared in the module).
//!
//! Input: `TEMPLATE top caption|bottom caption`, e.g.
//! `fine This is fine|Thesis due in two days`. Templates: `fine`, `drake`,
//! `sign`, `brain`, `plain`. Captions are drawn the classic way: upper case,
//! white with a black outline, shrunk and wrapped to fit.
//!
//! Drawing is tiny-skia (pure Rust); the glyphs are DejaVu Sans Condensed
//! Bold (the `dejavu` crate embeds it; its licence allows embedding),
//! outlined with ab_glyph. Everything is plain arithmetic in wasm, so every
//! node draws the same bytes.

use std::io::Write as _;

use ab_glyph::{Font, FontRef, OutlineCurve, ScaleFont};
use nebula_functions::{fail, input_text};
use tiny_skia::{
    Color, FillRule, GradientStop, LinearGradient, Paint, PathBuilder, Pixmap, Point, Rect, SpreadMode, Stroke,
    Transform,
};

#[used]
#[unsafe(link_section = "nebula:content-type")]
static CONTENT_TYPE: [u8; 9] = *b"image/png";

const WIDTH: u32 = 600;
const HEIGHT: u32 = 400;
const TEMPLATES: &[&str] = &["fine", "drake", "sign", "brain", "plain"];

fn main() {
    let input = input_text();
    let (template, captions) = input.split_once(char::is_whitespace).unwrap_or((input.as_str(), ""));
    if !TEMPLATES.contains(&template) {
        fail(&format!("the input is 'TEMPLATE top|bottom'; templates: {}", TEMPLATES.join(", ")));
    }
    let (top, bottom) = captions.split_once('|').unwrap_or((captions, ""));
    let mut pixmap = Pixmap::new(WIDTH, HEIGHT).expect("a 600×400 canvas");
    draw_template(&mut pixmap, template);
    let font = FontRef::try_from_slice(dejavu::sans_condensed::bold()).expect("the embedded font parses");
    draw_caption(&mut pixmap, &font, top.trim(), Edge::Top);
    draw_caption(&mut pixmap, &font, bottom.trim(), Edge::Bottom);
    let png = pixmap.encode_png().unwrap_or_else(|error| fail(&format!("encoding the PNG: {error}")));
    let _ = std::io::stdout().write_all(&png);
}

fn rgb(r: u8, g: u8, b: u8) -> Color {
    Color::from_rgba8(r, g, b, 255)
}

fn paint(color: Color) -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color(color);
    paint.anti_alias = true;
    paint
}

fn rect(pixmap: &mut Pixmap, x: f32, y: f32, w: f32, h: f32, color: Color) {
    if let Some(rect) = Rect::from_xywh(x, y, w, h) {
        pixmap.fill_rect(rect, &paint(color), Transform::identity(), None);
    }
}

fn circle(pixmap: &mut Pixmap, x: f32, y: f32, r: f32, color: Color) {
    if let Some(path) = PathBuilder::from_circle(x, y, r) {
        pixmap.fill_path(&path, &paint(color), FillRule::Winding, Transform::identity(), None);
    }
}

/// A vertical gradient over the whole canvas.
fn gradient(pixmap: &mut Pixmap, top: Color, bottom: Color) {
    let shader = LinearGradient::new(
        Point::from_xy(0.0, 0.0),
        Point::from_xy(0.0, HEIGHT as f32),
        vec![GradientStop::new(0.0, top), GradientStop::new(1.0, bottom)],
        SpreadMode::Pad,
        Transform::identity(),
    )
    .expect("a two-stop gradient");
    let paint = Paint { shader, anti_alias: true, ..Paint::default() };
    let rect = Rect::from_xywh(0.0, 0.0, WIDTH as f32, HEIGHT as f32).expect("the canvas");
    pixmap.fill_rect(rect, &paint, Transform::identity(), None);
}

/// A round face: skin, two eyes and a mouth curving up (`smile` > 0) or down.
fn face(pixmap: &mut Pixmap, x: f32, y: f32, r: f32, skin: Color, smile: f32) {
    circle(pixmap, x, y, r, rgb(51, 51, 51));
    circle(pixmap, x, y, r - 3.0, skin);
    circle(pixmap, x - r / 3.0, y - r / 5.0, r / 8.0, rgb(34, 34, 34));
    circle(pixmap, x + r / 3.0, y - r / 5.0, r / 8.0, rgb(34, 34, 34));
    let mut mouth = PathBuilder::new();
    mouth.move_to(x - r / 2.0, y + r / 3.0);
    mouth.quad_to(x, y + r / 3.0 + smile * r / 2.0, x + r / 2.0, y + r / 3.0);
    if let Some(path) = mouth.finish() {
        let stroke = Stroke { width: 4.0, ..Stroke::default() };
        pixmap.stroke_path(&path, &paint(rgb(34, 34, 34)), &stroke, Transform::identity(), None);
    }
}

fn draw_template(pixmap: &mut Pixmap, template: &str) {
    match template {
        "fine" => {
            gradient(pixmap, rgb(255, 224, 178), rgb(255, 112, 67));
            for i in 0..9u32 {
                let x = 20.0 + i as f32 * 70.0;
                let height = 120.0 + ((i * 37) % 90) as f32;
                let mut flame = PathBuilder::new();
                flame.move_to(x, HEIGHT as f32);
                flame.quad_to(x + 30.0, HEIGHT as f32 - 2.0 * height, x + 60.0, HEIGHT as f32);
                flame.close();
                if let Some(path) = flame.finish() {
                    let color = if i % 2 == 0 { rgb(255, 202, 40) } else { rgb(244, 81, 30) };
                    pixmap.fill_path(&path, &paint(color), FillRule::Winding, Transform::identity(), None);
                }
            }
            rect(pixmap, 245.0, 220.0, 110.0, 100.0, rgb(141, 110, 99));
            face(pixmap, 300.0, 190.0, 48.0, rgb(215, 168, 110), 0.8);
            rect(pixmap, 345.0, 245.0, 30.0, 36.0, rgb(255, 255, 255));
        }
        "drake" => {
            rect(pixmap, 0.0, 0.0, 600.0, 400.0, rgb(255, 255, 255));
            rect(pixmap, 0.0, 0.0, 250.0, 200.0, rgb(246, 178, 107));
            rect(pixmap, 0.0, 200.0, 250.0, 200.0, rgb(255, 217, 102));
            rect(pixmap, 0.0, 198.0, 600.0, 4.0, rgb(51, 51, 51));
            rect(pixmap, 248.0, 0.0, 4.0, 400.0, rgb(51, 51, 51));
            face(pixmap, 125.0, 100.0, 55.0, rgb(198, 134, 66), -0.7);
            rect(pixmap, 160.0, 40.0, 26.0, 70.0, rgb(198, 134, 66));
            face(pixmap, 125.0, 300.0, 55.0, rgb(198, 134, 66), 0.9);
        }
        "sign" => {
            rect(pixmap, 0.0, 0.0, 600.0, 400.0, rgb(197, 225, 165));
            rect(pixmap, 0.0, 260.0, 600.0, 140.0, rgb(141, 110, 99));
            face(pixmap, 110.0, 150.0, 50.0, rgb(241, 194, 125), 0.6);
            rect(pixmap, 70.0, 200.0, 80.0, 110.0, rgb(69, 90, 100));
            rect(pixmap, 190.0, 120.0, 380.0, 170.0, rgb(51, 51, 51));
            rect(pixmap, 194.0, 124.0, 372.0, 162.0, rgb(255, 255, 255));
        }
        "brain" => {
            gradient(pixmap, rgb(26, 35, 126), rgb(0, 0, 0));
            for (i, r) in [150.0, 110.0, 75.0].into_iter().enumerate() {
                let glow = [rgb(66, 165, 245), rgb(144, 202, 249), rgb(255, 238, 88)][i];
                circle(pixmap, 300.0, 200.0, r, glow);
            }
            circle(pixmap, 300.0, 200.0, 55.0, rgb(244, 143, 177));
            rect(pixmap, 298.0, 150.0, 4.0, 100.0, rgb(136, 14, 79));
        }
        _ => gradient(pixmap, rgb(69, 90, 100), rgb(38, 50, 56)),
    }
}

#[derive(Clone, Copy)]
enum Edge {
    Top,
    Bottom,
}

/// Greedy word wrap at `size` pixels within `width`.
fn wrap(font: &FontRef, size: f32, width: f32, text: &str) -> Vec<String> {
    let scaled = font.as_scaled(size);
    let measure = |line: &str| line.chars().map(|c| scaled.h_advance(font.glyph_id(c))).sum::<f32>();
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if measure(&format!("{line} {word}")) <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// The caption upper-cased, at the largest size (≤ 52 px) at which it fits
/// in three lines across the picture, white with a black outline.
fn draw_caption(pixmap: &mut Pixmap, font: &FontRef, caption: &str, edge: Edge) {
    if caption.is_empty() {
        return;
    }
    let text = caption.to_uppercase();
    let width = WIDTH as f32 - 24.0;
    let (mut size, mut lines) = (52.0f32, Vec::new());
    while size >= 14.0 {
        lines = wrap(font, size, width, &text);
        let widest = lines.iter().map(|line| line_width(font, size, line)).fold(0.0, f32::max);
        if lines.len() <= 3 && widest <= width {
            break;
        }
        size -= 2.0;
    }
    let scaled = font.as_scaled(size);
    let line_height = scaled.ascent() - scaled.descent();
    let block = line_height * lines.len() as f32;
    let first_baseline = match edge {
        Edge::Top => 10.0 + scaled.ascent(),
        Edge::Bottom => HEIGHT as f32 - 10.0 - block + scaled.ascent(),
    };
    let mut path = PathBuilder::new();
    for (i, line) in lines.iter().enumerate() {
        let x = (WIDTH as f32 - line_width(font, size, line)) / 2.0;
        add_line(&mut path, font, size, x, first_baseline + i as f32 * line_height, line);
    }
    let Some(path) = path.finish() else { return };
    let outline = Stroke { width: (size / 8.0).max(2.0), ..Stroke::default() };
    pixmap.stroke_path(&path, &paint(rgb(0, 0, 0)), &outline, Transform::identity(), None);
    pixmap.fill_path(&path, &paint(rgb(255, 255, 255)), FillRule::Winding, Transform::identity(), None);
}

fn line_width(font: &FontRef, size: f32, line: &str) -> f32 {
    let scaled = font.as_scaled(size);
    line.chars().map(|c| scaled.h_advance(font.glyph_id(c))).sum()
}

/// Appends the outlines of `line`'s glyphs, baseline at `y`, starting at `x`.
fn add_line(path: &mut PathBuilder, font: &FontRef, size: f32, mut x: f32, y: f32, line: &str) {
    let scaled = font.as_scaled(size);
    let scale = scaled.h_scale_factor();
    for c in line.chars() {
        let id = font.glyph_id(c);
        if let Some(outline) = font.outline(id) {
            // Font units, y up, to pixels, y down.
            let at = |p: ab_glyph::Point| (x + p.x * scale, y - p.y * scale);
            let mut pen: Option<(f32, f32)> = None;
            for curve in &outline.curves {
                let (start, end) = match curve {
                    OutlineCurve::Line(a, b) => (at(*a), at(*b)),
                    OutlineCurve::Quad(a, _, c) => (at(*a), at(*c)),
                    OutlineCurve::Cubic(a, _, _, d) => (at(*a), at(*d)),
                };
                if pen != Some(start) {
                    if pen.is_some() {
                        path.close();
                    }
                    path.move_to(start.0, start.1);
                }
                match curve {
                    OutlineCurve::Line(_, _) => path.line_to(end.0, end.1),
                    OutlineCurve::Quad(_, b, _) => {
                        let b = at(*b);
                        path.quad_to(b.0, b.1, end.0, end.1);
                    }
                    OutlineCurve::Cubic(_, b, c, _) => {
                        let (b, c) = (at(*b), at(*c));
                        path.cubic_to(b.0, b.1, c.0, c.1, end.0, end.1);
                    }
                }
                pen = Some(end);
            }
            if pen.is_some() {
                path.close();
            }
        }
        x += scaled.h_advance(id);
    }
}
