//! Academemes: academic memes as a web page, rendered by a pure function.
//!
//! The meme catalogue is not compiled in: it is JSON packed into this
//! module's data slot after the build (`nebula deploy academemes.wasm --data
//! memes.json`), so adding memes is a deploy, and each catalogue is its own
//! content-addressed module. The module declares its content type in the
//! `nebula:content-type` custom section, so nodes serve its answers as HTML.
//!
//! Input (the path segment after `/api/academemes/`):
//!   `` or `index`   the index page, linking every meme
//!   `42`            the meme with id 42
//!   `pick-SEED`     a meme picked from the catalogue by SEED (same seed, same meme)
//!   `catalogue`     the packed catalogue itself, as text
//! Each meme page links to the meme drawn as a PNG by the `memeify` function.
//! Every caption, title and id from the catalogue is HTML-escaped.

use std::fmt::Write as _;
use std::io::Write as _;

use nebula_functions::{SplitMix64, data_slot, fail, html_escape as esc, input_text};
use serde_json::Value;

#[used]
#[unsafe(link_section = "nebula:content-type")]
static CONTENT_TYPE: [u8; 24] = *b"text/html; charset=utf-8";

const SLOT_BYTES: usize = 64 * 1024;
#[used]
static CATALOGUE: [u8; SLOT_BYTES] = data_slot::empty::<SLOT_BYTES>();

struct Meme {
    id: String,
    template: String,
    title: String,
    captions: Vec<String>,
}

struct Catalogue {
    title: String,
    base: String,
    /// Where the `memeify` function answers: each meme links to itself as a PNG.
    memeify: String,
    memes: Vec<Meme>,
}

fn main() {
    let catalogue = load_catalogue();
    let input = input_text();
    let page = if input.is_empty() || input == "index" {
        index_page(&catalogue)
    } else if input == "catalogue" {
        let json = String::from_utf8_lossy(&data_slot::read(&CATALOGUE)).into_owned();
        let body = format!("<h1>The catalogue packed into this module</h1><pre id=\"catalogue\">{}</pre>", esc(&json));
        shell(&catalogue, "Catalogue", &body)
    } else if let Some(seed) = input.strip_prefix("pick-") {
        if catalogue.memes.is_empty() {
            fail("the catalogue is empty");
        }
        let index = SplitMix64::from_input(seed.as_bytes()).below(catalogue.memes.len() as u64) as usize;
        meme_page(&catalogue, index, Some(seed))
    } else {
        match catalogue.memes.iter().position(|meme| meme.id == input) {
            Some(index) => meme_page(&catalogue, index, None),
            None => fail(&format!("no meme with id '{input}'; the index lists them")),
        }
    };
    let _ = std::io::stdout().write_all(page.as_bytes());
}

fn load_catalogue() -> Catalogue {
    let bytes = data_slot::read(&CATALOGUE);
    if bytes.is_empty() {
        fail("no catalogue packed into this module: deploy it with --data memes.json");
    }
    let json: Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| fail(&format!("the packed catalogue is not JSON: {e}")));
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let memes = json["memes"]
        .as_array()
        .map(|memes| {
            memes
                .iter()
                .map(|meme| Meme {
                    id: text(&meme["id"]),
                    template: text(&meme["template"]),
                    title: text(&meme["title"]),
                    captions: meme["captions"].as_array().map(|c| c.iter().map(text).collect()).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    Catalogue {
        title: json["title"].as_str().unwrap_or("Academemes").to_owned(),
        base: json["base"].as_str().unwrap_or("/api/academemes/").to_owned(),
        memeify: json["memeify"].as_str().unwrap_or("/api/memeify/").to_owned(),
        memes,
    }
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;background:#f4f1ea;color:#222;margin:0}\
header{background:#2b2d42;color:#fff;padding:12px 24px}header a{color:#fff;text-decoration:none}\
main{max-width:760px;margin:0 auto;padding:16px}\
.meme svg{width:100%;height:auto;border:1px solid #999;background:#fff}\
nav a{margin-right:14px}ul.grid{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}\
ul.grid li{background:#fff;border:1px solid #ccc;padding:8px}ul.grid svg{width:100%;height:auto}\
footer{color:#666;font-size:12px;padding:16px}";

fn shell(catalogue: &Catalogue, title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · {site}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><style>{STYLE}</style></head><body>\
         <header><a href=\"{base}index\"><strong>{site}</strong></a> — memes from academia, \
         rendered by a pure WebAssembly function</header><main>{body}</main>\
         <footer>Pure: the same module and the same input give the same page, \
         so any node of the mesh serves it from its cache.</footer></body></html>\n",
        title = esc(title),
        site = esc(&catalogue.title),
        base = esc(&catalogue.base),
    )
}

fn index_page(catalogue: &Catalogue) -> String {
    let base = esc(&catalogue.base);
    let mut body = format!("<h1>{} memes</h1><ul class=\"grid\" id=\"memes\">", catalogue.memes.len());
    for meme in &catalogue.memes {
        let _ = write!(
            body,
            "<li class=\"meme\"><a href=\"{base}{id}\">{svg}<br>#{idt} {title}</a></li>",
            id = esc(&meme.id),
            idt = esc(&meme.id),
            svg = draw(meme),
            title = esc(&meme.title),
        );
    }
    body.push_str("</ul><p>A meme for a seed: ");
    for seed in 1..=5 {
        let _ = write!(body, "<a href=\"{base}pick-{seed}\">seed {seed}</a> ");
    }
    let _ = write!(body, "</p><p><a href=\"{base}catalogue\">The catalogue</a> (data packed into this module)</p>");
    shell(catalogue, "Index", &body)
}

fn meme_page(catalogue: &Catalogue, index: usize, seed: Option<&str>) -> String {
    let meme = &catalogue.memes[index];
    let base = esc(&catalogue.base);
    let count = catalogue.memes.len();
    let previous = &catalogue.memes[(index + count - 1) % count];
    let next = &catalogue.memes[(index + 1) % count];
    let mut body = String::new();
    if let Some(seed) = seed {
        let _ = write!(body, "<p class=\"pick\">Picked for seed <code>{}</code></p>", esc(seed));
    }
    let _ = write!(
        body,
        "<h1 id=\"title\">#{id} {title}</h1><figure class=\"meme\" id=\"meme-{id}\" data-template=\"{template}\">{svg}\
         <figcaption><ol>",
        id = esc(&meme.id),
        title = esc(&meme.title),
        template = esc(&meme.template),
        svg = draw(meme),
    );
    for caption in &meme.captions {
        let _ = write!(body, "<li class=\"caption\">{}</li>", esc(caption));
    }
    let _ = write!(
        body,
        "</ol></figcaption></figure><p><a id=\"png\" href=\"{}{}\">This meme as a PNG</a> (drawn by the memeify function)</p>",
        esc(&catalogue.memeify),
        esc(&memeify_input(meme)),
    );
    let _ = write!(
        body,
        "<nav><a href=\"{base}{prev}\">← previous</a><a href=\"{base}index\">index</a>\
         <a href=\"{base}{next}\">next →</a></nav>",
        prev = esc(&previous.id),
        next = esc(&next.id),
    );
    shell(catalogue, &meme.title, &body)
}

/// The memeify call for a meme, percent-encoded as one path segment:
/// `TEMPLATE top|bottom` (first and last caption; memeify draws any template
/// it does not know on a plain background).
fn memeify_input(meme: &Meme) -> String {
    let template = match meme.template.as_str() {
        known @ ("fine" | "drake" | "sign" | "brain") => known,
        _ => "plain",
    };
    let top = caption(meme, 0);
    let bottom = if meme.captions.len() > 1 { meme.captions.last().map_or("", String::as_str) } else { "" };
    percent_encode(&format!("{template} {top}|{bottom}"))
}

/// Every byte but unreserved URL characters as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

// ---- drawing: every template is an SVG of 600×400 with the captions in it ----

fn caption(meme: &Meme, i: usize) -> &str {
    meme.captions.get(i).map_or("", String::as_str)
}

/// Word-wrapped, escaped SVG text centred at (x, y), at most `width` characters a line.
fn text(x: u32, y: u32, size: u32, width: usize, fill: &str, content: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for word in content.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    let first = y as i64 - (lines.len() as i64 - 1) * (size as i64 * 6 / 5) / 2;
    let mut out = format!(
        "<text x=\"{x}\" y=\"{first}\" font-size=\"{size}\" fill=\"{fill}\" text-anchor=\"middle\" \
         font-family=\"DejaVu Sans, sans-serif\" font-weight=\"bold\">"
    );
    for (i, line) in lines.iter().enumerate() {
        let dy = if i == 0 { 0 } else { size * 6 / 5 };
        let _ = write!(out, "<tspan x=\"{x}\" dy=\"{dy}\">{}</tspan>", esc(line));
    }
    out.push_str("</text>");
    out
}

fn face(cx: u32, cy: u32, r: u32, skin: &str, mood: &str) -> String {
    let mouth = match mood {
        "happy" => format!("M{} {} Q{cx} {} {} {}", cx - r / 2, cy + r / 3, cy + r * 3 / 4, cx + r / 2, cy + r / 3),
        "sad" => format!("M{} {} Q{cx} {} {} {}", cx - r / 2, cy + r / 2, cy + r / 6, cx + r / 2, cy + r / 2),
        _ => format!("M{} {} L{} {}", cx - r / 2, cy + r / 2, cx + r / 2, cy + r / 2),
    };
    format!(
        "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"{r}\" fill=\"{skin}\" stroke=\"#333\" stroke-width=\"2\"/>\
         <circle cx=\"{}\" cy=\"{}\" r=\"{e}\" fill=\"#222\"/><circle cx=\"{}\" cy=\"{}\" r=\"{e}\" fill=\"#222\"/>\
         <path d=\"{mouth}\" stroke=\"#222\" stroke-width=\"3\" fill=\"none\"/>",
        cx - r / 3,
        cy - r / 5,
        cx + r / 3,
        cy - r / 5,
        e = (r / 8).max(2),
    )
}

fn draw(meme: &Meme) -> String {
    let inner = match meme.template.as_str() {
        "drake" => drake(meme),
        "brain" => brain(meme),
        "distracted" => distracted(meme),
        "buttons" => buttons(meme),
        "fine" => fine(meme),
        _ => sign(meme),
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 600 400\" role=\"img\" aria-label=\"{}\">{inner}</svg>",
        esc(&meme.title)
    )
}

fn drake(meme: &Meme) -> String {
    let mut s = String::from(
        "<rect width=\"600\" height=\"400\" fill=\"#fff\"/><rect width=\"250\" height=\"200\" fill=\"#f6b26b\"/>\
         <rect y=\"200\" width=\"250\" height=\"200\" fill=\"#ffd966\"/><line x1=\"0\" y1=\"200\" x2=\"600\" y2=\"200\" stroke=\"#333\" stroke-width=\"3\"/>\
         <line x1=\"250\" y1=\"0\" x2=\"250\" y2=\"400\" stroke=\"#333\" stroke-width=\"3\"/>",
    );
    s += &face(120, 100, 50, "#c68642", "sad");
    s += "<rect x=\"150\" y=\"40\" width=\"26\" height=\"70\" rx=\"10\" fill=\"#c68642\" stroke=\"#333\" stroke-width=\"2\"/>";
    s += &face(120, 300, 50, "#c68642", "happy");
    s += "<path d=\"M165 300 L225 285 L225 298 L170 312 Z\" fill=\"#c68642\" stroke=\"#333\" stroke-width=\"2\"/>";
    s += &text(425, 105, 26, 20, "#222", caption(meme, 0));
    s += &text(425, 305, 26, 20, "#222", caption(meme, 1));
    s
}

fn brain(meme: &Meme) -> String {
    let rows = meme.captions.len().clamp(1, 5) as u32;
    let h = 400 / rows;
    let mut s = String::from("<rect width=\"600\" height=\"400\" fill=\"#fff\"/>");
    for i in 0..rows {
        let y = i * h;
        let glow = ["#cfd8dc", "#90caf9", "#42a5f5", "#ffee58", "#ffffff"][i as usize];
        let back = ["#eceff1", "#263238", "#1a237e", "#4a148c", "#000000"][i as usize];
        let _ = write!(
            s,
            "<rect y=\"{y}\" width=\"600\" height=\"{h}\" fill=\"#fafafa\" stroke=\"#333\"/>\
             <rect x=\"380\" y=\"{y}\" width=\"220\" height=\"{h}\" fill=\"{back}\"/>\
             <ellipse cx=\"490\" cy=\"{cy}\" rx=\"{rx}\" ry=\"{ry}\" fill=\"{glow}\" opacity=\"0.9\"/>\
             <ellipse cx=\"490\" cy=\"{cy}\" rx=\"{brx}\" ry=\"{bry}\" fill=\"#f48fb1\" stroke=\"#880e4f\" stroke-width=\"2\"/>\
             <path d=\"M490 {t} L490 {b}\" stroke=\"#880e4f\" stroke-width=\"2\"/>",
            cy = y + h / 2,
            rx = 30 + i * 18,
            ry = (h / 2 - 4).min(20 + i * 10),
            brx = 22 + i * 6,
            bry = (h / 2 - 8).min(14 + i * 4),
            t = y + h / 2 - (h / 2 - 8).min(14 + i * 4),
            b = y + h / 2 + (h / 2 - 8).min(14 + i * 4),
        );
        s += &text(190, y + h / 2 + 8, 22, 26, "#222", caption(meme, i as usize));
    }
    s
}

fn distracted(meme: &Meme) -> String {
    let mut s = String::from(
        "<rect width=\"600\" height=\"400\" fill=\"#a5d6a7\"/><rect y=\"300\" width=\"600\" height=\"100\" fill=\"#bcaaa4\"/>",
    );
    // The one walking by (left), the one looking (middle), the one left behind (right).
    for (x, skin, dress, mood) in
        [(110, "#f1c27d", "#e53935", "happy"), (320, "#e0ac69", "#1e88e5", "happy"), (480, "#f1c27d", "#8e24aa", "sad")]
    {
        let _ = write!(s, "<rect x=\"{}\" y=\"150\" width=\"70\" height=\"170\" rx=\"20\" fill=\"{dress}\"/>", x - 35);
        s += &face(x, 115, 38, skin, mood);
    }
    s += "<path d=\"M300 110 Q220 60 150 100\" stroke=\"#333\" stroke-width=\"3\" fill=\"none\" stroke-dasharray=\"6 6\"/>";
    s += &text(110, 360, 22, 16, "#fff", caption(meme, 0));
    s += &text(320, 360, 22, 16, "#fff", caption(meme, 1));
    s += &text(480, 360, 22, 16, "#fff", caption(meme, 2));
    s
}

fn buttons(meme: &Meme) -> String {
    let mut s = String::from(
        "<rect width=\"600\" height=\"400\" fill=\"#e3f2fd\"/><rect x=\"60\" y=\"30\" width=\"480\" height=\"160\" rx=\"16\" fill=\"#cfd8dc\" stroke=\"#333\" stroke-width=\"3\"/>\
         <circle cx=\"190\" cy=\"110\" r=\"62\" fill=\"#e53935\" stroke=\"#333\" stroke-width=\"3\"/>\
         <circle cx=\"410\" cy=\"110\" r=\"62\" fill=\"#e53935\" stroke=\"#333\" stroke-width=\"3\"/>",
    );
    s += &text(190, 115, 17, 11, "#fff", caption(meme, 0));
    s += &text(410, 115, 17, 11, "#fff", caption(meme, 1));
    s += &face(300, 270, 48, "#ffcc80", "flat");
    s += "<path d=\"M340 250 q6 14 0 20 q-6 -6 0 -20\" fill=\"#4fc3f7\"/><path d=\"M258 240 q6 14 0 20 q-6 -6 0 -20\" fill=\"#4fc3f7\"/>";
    s += &text(300, 365, 24, 40, "#222", caption(meme, 2));
    s
}

fn fine(meme: &Meme) -> String {
    let mut s = String::from("<rect width=\"600\" height=\"400\" fill=\"#ffe0b2\"/>");
    for i in 0..9u32 {
        let x = 20 + i * 70;
        let _ = write!(
            s,
            "<path d=\"M{x} 400 Q{} {} {} 400 Z\" fill=\"#ff7043\"/><path d=\"M{} 400 Q{} {} {} 400 Z\" fill=\"#ffca28\"/>",
            x + 30,
            150 + (i * 37) % 90,
            x + 60,
            x + 12,
            x + 30,
            250 + (i * 23) % 60,
            x + 48
        );
    }
    s += "<rect x=\"250\" y=\"230\" width=\"110\" height=\"90\" rx=\"14\" fill=\"#8d6e63\"/>";
    s += &face(300, 200, 45, "#d7a86e", "happy");
    s += "<rect x=\"340\" y=\"250\" width=\"30\" height=\"34\" rx=\"5\" fill=\"#fff\" stroke=\"#333\"/>";
    s += "<path d=\"M230 120 Q300 20 470 40 Q560 60 520 120 Q480 160 330 150 Z\" fill=\"#fff\" stroke=\"#333\" stroke-width=\"2\"/>";
    s += &text(395, 95, 24, 22, "#222", caption(meme, 0));
    s += &text(300, 385, 22, 44, "#b71c1c", caption(meme, 1));
    s
}

fn sign(meme: &Meme) -> String {
    let mut s = String::from(
        "<rect width=\"600\" height=\"400\" fill=\"#c5e1a5\"/><rect y=\"250\" width=\"600\" height=\"150\" fill=\"#8d6e63\"/>",
    );
    s += &face(110, 140, 50, "#f1c27d", "happy");
    s += "<rect x=\"70\" y=\"190\" width=\"80\" height=\"110\" rx=\"20\" fill=\"#455a64\"/>";
    s += "<rect x=\"190\" y=\"90\" width=\"380\" height=\"200\" fill=\"#fff\" stroke=\"#333\" stroke-width=\"3\"/>";
    s += &text(380, 195, 26, 24, "#222", caption(meme, 0));
    s += &text(380, 270, 16, 44, "#666", caption(meme, 1));
    s
}
