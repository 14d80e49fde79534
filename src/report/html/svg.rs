//! Small SVG building blocks: escaping, linear scales, "nice" ticks, number formatting and a
//! plot frame with axes. Coordinates are written with one decimal so output is compact and
//! byte-for-byte reproducible.

use std::fmt::Write;

/// Escape text for HTML/SVG text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with one decimal (no `-0.0`).
pub fn c(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == 0.0 {
        "0".to_string()
    } else if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// A human number: up to 4 significant digits, no exponent for ordinary magnitudes.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    let a = v.abs();
    let s = if a >= 1000.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    };
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Linear map from a data domain to a pixel range.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    /// Map `[d0, d1]` onto `[r0, r1]`; a degenerate domain is widened so nothing divides by zero.
    pub fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Scale {
        let (d0, d1) = if d1 > d0 {
            (d0, d1)
        } else {
            let pad = if d0 == 0.0 { 1.0 } else { d0.abs() * 0.1 };
            (d0 - pad, d0 + pad)
        };
        Scale { d0, d1, r0, r1 }
    }

    /// Pixel of a data value.
    pub fn at(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// About `count` round tick values covering `[lo, hi]` (steps of 1, 2 or 5 × 10^k); returns the
/// ticks and the widened domain `[first, last]`.
pub fn nice_ticks(lo: f64, hi: f64, count: usize) -> (Vec<f64>, f64, f64) {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else if lo == 0.0 {
        (0.0, 1.0)
    } else {
        (lo - lo.abs() * 0.1, hi + hi.abs() * 0.1)
    };
    let raw = (hi - lo) / count.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor() * step;
    let last = (hi / step).ceil() * step;
    let n = ((last - first) / step).round() as usize;
    let ticks = (0..=n).map(|i| first + i as f64 * step).collect();
    (ticks, first, last)
}

/// The plot area of a chart and its scales.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// Left edge of the plot area.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
    /// x scale.
    pub x: Scale,
    /// y scale.
    pub y: Scale,
}

impl Frame {
    /// A frame whose axes cover the given data ranges with nice ticks; returns it and the ticks.
    pub fn nice(
        (left, top, width, height): (f64, f64, f64, f64),
        (x_lo, x_hi): (f64, f64),
        (y_lo, y_hi): (f64, f64),
    ) -> (Frame, Vec<f64>, Vec<f64>) {
        let (xt, x0, x1) = nice_ticks(x_lo, x_hi, 5);
        let (yt, y0, y1) = nice_ticks(y_lo, y_hi, 4);
        let frame = Frame {
            left,
            top,
            width,
            height,
            x: Scale::new(x0, x1, left, left + width),
            y: Scale::new(y0, y1, top + height, top),
        };
        (frame, xt, yt)
    }

    /// Grid lines, tick labels, the frame and axis labels.
    pub fn draw_axes(
        &self,
        out: &mut String,
        xt: &[f64],
        yt: &[f64],
        x_label: &str,
        y_label: &str,
    ) {
        let (l, t, w, h) = (self.left, self.top, self.width, self.height);
        out.push_str("<g class=\"axes\">");
        for &v in xt {
            let x = self.x.at(v);
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{x}\" y1=\"{t}\" x2=\"{x}\" y2=\"{b}\"/><text class=\"tick\" x=\"{x}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text>",
                x = c(x),
                t = c(t),
                b = c(t + h),
                ty = c(t + h + 14.0),
                label = num(v)
            );
        }
        for &v in yt {
            let y = self.y.at(v);
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{l}\" y1=\"{y}\" x2=\"{r}\" y2=\"{y}\"/><text class=\"tick\" x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>",
                l = c(l),
                r = c(l + w),
                y = c(y),
                tx = c(l - 5.0),
                ty = c(y + 4.0),
                label = num(v)
            );
        }
        let _ = write!(
            out,
            "<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            c(l),
            c(t),
            c(w),
            c(h)
        );
        let _ = write!(
            out,
            "<text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            c(l + w / 2.0),
            c(t + h + 32.0),
            esc(x_label)
        );
        let _ = write!(
            out,
            "<text class=\"axis-label\" transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            c(l - 44.0),
            c(t + h / 2.0),
            esc(y_label)
        );
        out.push_str("</g>");
    }
}

/// `points` as an SVG `points` attribute value.
pub fn polyline_points(points: impl IntoIterator<Item = (f64, f64)>) -> String {
    let mut s = String::new();
    for (i, (x, y)) in points.into_iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{},{}", c(x), c(y));
    }
    s
}

/// A marker shape centred at `(x, y)`; shapes (not colour alone) tell series apart.
pub fn marker(shape: &str, x: f64, y: f64, r: f64, class: &str) -> String {
    match shape {
        "square" => format!(
            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            c(x - r),
            c(y - r),
            c(2.0 * r),
            c(2.0 * r)
        ),
        "diamond" => format!(
            "<polygon class=\"{class}\" points=\"{}\"/>",
            polyline_points([
                (x, y - r * 1.3),
                (x + r * 1.3, y),
                (x, y + r * 1.3),
                (x - r * 1.3, y)
            ])
        ),
        "triangle" => format!(
            "<polygon class=\"{class}\" points=\"{}\"/>",
            polyline_points([(x, y - r * 1.3), (x + r * 1.2, y + r), (x - r * 1.2, y + r)])
        ),
        _ => format!(
            "<circle class=\"{class}\" cx=\"{}\" cy=\"{}\" r=\"{}\"/>",
            c(x),
            c(y),
            c(r)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_and_ticks() {
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
        assert_eq!(
            (c(1.04), c(1.05), c(-0.01), c(3.0)),
            ("1".into(), "1.1".into(), "0".into(), "3".into())
        );
        assert_eq!(
            (num(1280.04), num(722.14), num(19.434), num(0.5), num(0.0)),
            (
                "1280".into(),
                "722.1".into(),
                "19.43".into(),
                "0.5".into(),
                "0".into()
            )
        );
        let (t, lo, hi) = nice_ticks(3.0, 97.0, 5);
        assert_eq!(t, vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!((lo, hi), (0.0, 100.0));
        let (t, _, _) = nice_ticks(5.0, 5.0, 4);
        assert!(t.len() >= 2 && t[0] <= 5.0 && *t.last().unwrap() >= 5.0);
        let s = Scale::new(0.0, 10.0, 100.0, 0.0);
        assert_eq!((s.at(0.0), s.at(5.0), s.at(10.0)), (100.0, 50.0, 0.0));
        assert!(Scale::new(2.0, 2.0, 0.0, 1.0).at(2.0).is_finite());
    }
}
